"""GeoReport v2 resources as typed values, and attribute validation shared by client and server.

Every identifier (service_code, service_request_id, token, account_id, address_id, zipcode, an
attribute's code and value keys) is an opaque string: ``"001"`` stays ``"001"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "DATATYPES",
    "DESCRIPTION_LIMIT",
    "Attribute",
    "AttributeValue",
    "Discovery",
    "Endpoint",
    "NewRequest",
    "PostResult",
    "Service",
    "ServiceDefinition",
    "ServiceRequest",
    "validate_attributes",
]

#: The spec limits a request's description to 4,000 characters.
DESCRIPTION_LIMIT = 4000
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
#: MIME types discovery uses for the two formats.
FORMAT_MIME = {"xml": "text/xml", "json": "application/json"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    specification: str
    url: str
    changeset: str | None
    type: str | None
    formats: list[str]


@dataclass(frozen=True, slots=True)
class Discovery:
    changeset: str | None
    contact: str | None
    key_service: str | None
    endpoints: list[Endpoint]

    def formats_for(self, url: str) -> list[str]:
        """'json'/'xml' the endpoint at ``url`` (or else the first GeoReport v2 one) lists."""
        v2 = [e for e in self.endpoints if "GeoReport_v2" in e.specification]
        chosen = [e for e in v2 if e.url.rstrip("/") == url.rstrip("/")] or v2
        found = []
        for e in chosen[:1]:
            for mime in e.formats:
                for name, expected in FORMAT_MIME.items():
                    if mime.split(";")[0].strip().lower() == expected and name not in found:
                        found.append(name)
        return found


@dataclass(frozen=True, slots=True)
class Service:
    service_code: str
    service_name: str | None
    description: str | None
    metadata: bool
    type: str | None
    keywords: str | None
    group: str | None


@dataclass(frozen=True, slots=True)
class AttributeValue:
    key: str
    name: str | None


@dataclass(frozen=True, slots=True)
class Attribute:
    code: str
    datatype: str
    required: bool
    variable: bool = True
    datatype_description: str | None = None
    order: int | None = None
    description: str | None = None
    values: list[AttributeValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    service_code: str
    attributes: list[Attribute]


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    service_request_id: str | None
    status: str | None = None
    status_notes: str | None = None
    service_name: str | None = None
    service_code: str | None = None
    description: str | None = None
    agency_responsible: str | None = None
    service_notice: str | None = None
    requested_datetime: datetime | None = None
    updated_datetime: datetime | None = None
    expected_datetime: datetime | None = None
    address: str | None = None
    address_id: str | None = None
    zipcode: str | None = None
    lat: float | None = None
    long: float | None = None
    media_url: str | None = None
    token: str | None = None
    #: Extension fields (``duplicate``, ``parent_service_request_id``) when the server sends them.
    duplicate_of: str | None = None


@dataclass(frozen=True, slots=True)
class PostResult:
    """What a POST (or a reconciliation that found the request) produced."""

    service_request_id: str | None
    token: str | None
    service_notice: str | None = None
    account_id: str | None = None
    #: True when the request was found on the server by its marker rather than created now.
    reconciled: bool = False


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A request to POST. Attribute values are strings (lists for multivaluelist)."""

    service_code: str
    description: str
    lat: float | None = None
    long: float | None = None
    address_string: str | None = None
    address_id: str | None = None
    attributes: dict[str, str | list[str]] = field(default_factory=dict)
    media_url: str | None = None
    #: Our reference marker, kept beside the description so errors can name it.
    reference: str | None = None

    def form(self, *, api_key: str | None, jurisdiction_id: str | None) -> list[tuple[str, str]]:
        """The form fields, in the spec's encoding (``attribute[CODE][]`` for several values)."""
        fields: list[tuple[str, str]] = []
        if api_key:
            fields.append(("api_key", api_key))
        if jurisdiction_id:
            fields.append(("jurisdiction_id", jurisdiction_id))
        fields.append(("service_code", self.service_code))
        if self.lat is not None and self.long is not None:
            fields += [("lat", repr(self.lat)), ("long", repr(self.long))]
        if self.address_string:
            fields.append(("address_string", self.address_string))
        if self.address_id:
            fields.append(("address_id", self.address_id))
        fields.append(("description", self.description))
        if self.media_url:
            fields.append(("media_url", self.media_url))
        for code, value in self.attributes.items():
            if isinstance(value, list):
                fields += [(f"attribute[{code}][]", v) for v in value]
            else:
                fields.append((f"attribute[{code}]", value))
        return fields


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _datetime(text: str) -> bool:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    return parsed.tzinfo is not None


def validate_attributes(
    definition: ServiceDefinition, values: dict[str, str | list[str]]
) -> tuple[dict[str, str | list[str]], list[str]]:
    """Check ``values`` against the service definition; returns (normalised values, problems).

    A list value may be given by key or by its human name (mapped to the key). Unknown codes,
    missing required attributes, numbers that are not numbers, datetimes without a zone and
    values outside a list are each one problem naming the attribute, the value and what was expected.
    """
    problems: list[str] = []
    normalised: dict[str, str | list[str]] = {}
    by_code = {a.code: a for a in definition.attributes}
    for code in values:
        if code not in by_code:
            known = ", ".join(sorted(by_code)) or "none"
            problems.append(
                f"attribute {code!r} is not defined for service {definition.service_code!r} "
                f"(defined: {known})"
            )
    for attr in sorted(definition.attributes, key=lambda a: (a.order is None, a.order or 0, a.code)):
        raw = values.get(attr.code)
        empty = raw is None or raw == "" or raw == []
        if empty:
            if attr.required and attr.variable:
                problems.append(f"attribute {attr.code!r} of service {definition.service_code!r} is required")
            continue
        assert raw is not None
        result, problem = _check_value(attr, raw)
        if problem:
            problems.append(problem)
        else:
            normalised[attr.code] = result
    return normalised, problems


def _check_value(attr: Attribute, raw: str | list[str]) -> tuple[str | list[str], str | None]:
    kind: Literal["one", "many"] = "many" if attr.datatype == "multivaluelist" else "one"
    items = raw if isinstance(raw, list) else [raw]
    if kind == "one" and len(items) != 1:
        return raw, f"attribute {attr.code!r} takes one value ({attr.datatype}), got {len(items)}"
    out: list[str] = []
    for item in items:
        text = str(item)
        if attr.datatype in ("singlevaluelist", "multivaluelist"):
            keys = {v.key: v.key for v in attr.values}
            names = {(v.name or "").casefold(): v.key for v in attr.values if v.name}
            key = keys.get(text) or names.get(text.casefold())
            if key is None:
                allowed = ", ".join(v.key for v in attr.values)
                return raw, f"attribute {attr.code!r}: {text!r} is not one of its values ({allowed})"
            out.append(key)
        elif attr.datatype == "number":
            if not _number(text):
                return raw, f"attribute {attr.code!r}: expected a number, got {text!r}"
            out.append(text)
        elif attr.datatype == "datetime":
            if not _datetime(text):
                return (
                    raw,
                    f"attribute {attr.code!r}: expected an ISO 8601 datetime with a zone, got {text!r}",
                )
            out.append(text)
        elif attr.datatype == "string" and ("\n" in text or "\r" in text):
            return raw, f"attribute {attr.code!r}: a string takes no line breaks (use datatype text)"
        else:
            out.append(text)
    return (out if kind == "many" else out[0]), None
