"""Value types the routers share: safe text, UTC times, pages, time ranges.

PostgreSQL text cannot hold NUL characters, so every string a client sends is checked for one
here and refused with a 422 naming the field, rather than failing later inside the database.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from sense311.api.errors import Invalid
from sense311.durations import format_duration

__all__ = [
    "IsoTime",
    "Page",
    "Strict",
    "StrictBody",
    "Text",
    "check_json",
    "check_text",
    "resolve_range",
    "utc",
]

T = TypeVar("T")


def check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def check_json(value: Any, depth: int = 0) -> Any:
    """``value`` when it is JSON PostgreSQL's jsonb can store (no NUL, at most 32 levels deep)."""
    if depth > 32:
        raise ValueError("is nested more than 32 levels deep")
    if isinstance(value, str):
        return check_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not contain NaN or infinite numbers")
    if isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key))
            check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, depth + 1)
    return value


#: A string that PostgreSQL can store.
Text = Annotated[str, AfterValidator(check_text)]

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|z|[+-]\d{2}(:?\d{2})?)?$")


def _iso_time(value: Any) -> Any:
    # pydantic also reads numbers as Unix times; '0.5' as a time is a mistake, not 1970.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO.match(value.strip()):
        raise ValueError(f"expected an ISO 8601 time like '2026-03-01T00:00:00Z', got {value!r}")
    return value.strip()


#: A time as ISO 8601 text (or a datetime); a time without a zone is UTC (see ``utc``).
IsoTime = Annotated[datetime, BeforeValidator(_iso_time)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StrictBody(BaseModel):
    """A JSON body taken as typed: ``false`` is not 0 and ``"1"`` is not a number."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Page(BaseModel, Generic[T]):
    """One page of a listing: ``total`` rows match, ``items`` starts at ``offset``."""

    items: list[T]
    total: int
    limit: int
    offset: int


def utc(value: datetime) -> datetime:
    """Times without a zone are UTC (as on the command line); the rest are converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def resolve_range(
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
    default: timedelta,
    longest: timedelta | None = None,
) -> tuple[datetime, datetime]:
    """``[start, end]`` in UTC: ``end`` defaults to now, ``start`` to ``default`` before ``end``."""
    try:
        until = utc(end) if end is not None else now
        since = utc(start) if start is not None else until - default
    except OverflowError:
        raise Invalid("'start' or 'end' is out of the supported range of dates") from None
    if until <= since:
        raise Invalid(f"'end' ({until.isoformat()}) must be after 'start' ({since.isoformat()})")
    if longest is not None and until - since > longest:
        raise Invalid(
            f"the range {since.isoformat()} – {until.isoformat()} is longer than the "
            f"{format_duration(longest)} allowed; narrow it"
        )
    return since, until
