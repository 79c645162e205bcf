"""Writing GeoReport v2 bodies in XML or JSON from plain structures (the server's side of ``parse``).

The JSON is the spec's mapping of its XML: a container element (``services``, ``service_requests``,
``attributes``, …) is a JSON array of its children. Identifiers are always JSON strings.
"""

from __future__ import annotations

import json
import re
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["CONTENT_TYPES", "ITEM_TAGS", "render"]

CONTENT_TYPES = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
#: Container element → the tag of each of its children.
ITEM_TAGS = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "errors": "error",
    "notes": "note",
}
#: Characters XML 1.0 cannot carry at all; stripped rather than producing an unparsable document.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _XML_ILLEGAL.sub("", escape(str(value)))


def _xml(tag: str, value: Any, out: list[str]) -> None:
    if value is None or value == "":
        out.append(f"<{tag}/>")
    elif isinstance(value, list):
        child = ITEM_TAGS.get(tag, "item")
        out.append(f"<{tag}>")
        for item in value:
            _xml(child, item, out)
        out.append(f"</{tag}>")
    elif isinstance(value, dict):
        out.append(f"<{tag}>")
        for key, item in value.items():
            _xml(key, item, out)
        out.append(f"</{tag}>")
    else:
        out.append(f"<{tag}>{_scalar(value)}</{tag}>")


def render(fmt: str, root: str, data: Any) -> bytes:
    """``data`` under the root element ``root`` (XML) or as it is (JSON), UTF-8 encoded."""
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    _xml(root, data, out)
    return "".join(out).encode("utf-8")
