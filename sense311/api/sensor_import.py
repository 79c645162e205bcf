"""Registry files: CSV and GeoJSON parsed into validated sensors, or every problem by row.

CSV: a header row, then one sensor per row. Columns ``id`` and ``kind`` are required; ``lat``,
``lon``, ``address``, ``district``, ``tags`` (``;``-separated) and ``gateway`` are optional, and
``metadata.<key>`` columns fill the sensor's metadata (values stay strings; an empty cell leaves
the key out). An unknown column is refused: it is usually a typo, and dropping it would lose data.
Rows are numbered as a spreadsheet numbers them: the header is row 1.

GeoJSON: a FeatureCollection of Point features (``[lon, lat]``; a null geometry means no
location). ``properties`` carry ``id`` (else the feature's ``id``), ``kind``, ``address``,
``district``, ``tags`` (a list or a ``;``-separated string), ``gateway`` and ``metadata``;
any other property joins the metadata, as GIS exports carry their attributes that way.
Features are numbered from 1.

Each row also says which fields the file gives (its CSV columns, its feature's properties), so
an import updates those and leaves the others of an existing sensor alone; metadata keys are
merged into the existing metadata.

Either file is accepted whole or not at all: ``parse_*`` raise ``Invalid`` listing the problems.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sense311.api.errors import Invalid
from sense311.api.sensor_models import SensorIn

__all__ = ["CSV_COLUMNS", "MAX_PROBLEMS", "ImportRow", "parse_csv", "parse_geojson"]

CSV_COLUMNS = ("id", "kind", "lat", "lon", "address", "district", "tags", "gateway")
METADATA_PREFIX = "metadata."
#: Problems listed in an error: enough to fix a column mapping mistake at once, not a flood.
MAX_PROBLEMS = 50


@dataclass(frozen=True, slots=True)
class ImportRow:
    """A validated sensor and the registry fields its row gives (``id`` and ``kind`` always)."""

    sensor: SensorIn
    fields: frozenset[str]


class _Problems:
    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.items: list[dict[str, Any]] = []
        self.count = 0

    def add(self, number: int, field: str | None, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append({self.unit: number, "field": field, "message": message})

    def raise_if_any(self, what: str) -> None:
        if not self.count:
            return
        first = self.items[0]
        field = f" '{first['field']}':" if first["field"] else ""
        more = f" (and {self.count - 1} more)" if self.count > 1 else ""
        where = f"{self.unit} {first[self.unit]}:{field}"
        raise Invalid(
            f"{what} rejected, nothing imported: {where} {first['message']}{more}", details=self.items
        )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        ) from None


def _validate(raw: dict[str, Any], number: int, problems: _Problems) -> SensorIn | None:
    try:
        return SensorIn.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = ".".join(str(p) for p in error["loc"]) or None
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.add(number, loc, "required" if error["type"] == "missing" else message)
        return None


def _number(text: str, field: str, row: int, problems: _Problems) -> float | None:
    try:
        return float(text)
    except ValueError:
        problems.add(row, field, f"expected a number, got {text!r}")
        return None


def _check_ids(rows: list[tuple[int, ImportRow]], problems: _Problems) -> None:
    seen: dict[str, int] = {}
    for number, row in rows:
        sensor = row.sensor
        if sensor.id in seen:
            problems.add(
                number,
                "id",
                f"duplicate sensor id {sensor.id!r} (first at {problems.unit} {seen[sensor.id]})",
            )
        else:
            seen[sensor.id] = number


def parse_csv(data: bytes) -> list[ImportRow]:
    """The sensors of a CSV file; ``Invalid`` with every problem (up to MAX_PROBLEMS) otherwise."""
    text = _decode(data)
    problems = _Problems("row")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise Invalid(f"CSV file rejected, nothing imported: row 1: {exc}") from None
    if not header or not any(h.strip() for h in header):
        raise Invalid(
            "CSV file rejected, nothing imported: the file is empty; expected a header row with id,kind,…"
        )
    columns = [h.strip() for h in header]
    for name in columns:
        if name in CSV_COLUMNS or (name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX)):
            continue
        close = difflib.get_close_matches(name, CSV_COLUMNS, n=1)
        hint = (
            f"; did you mean '{close[0]}'?"
            if close
            else f"; expected {', '.join(CSV_COLUMNS)} or metadata.<key>"
        )
        problems.add(1, name, f"unknown column{hint}")
    for name in ("id", "kind"):
        if name not in columns:
            problems.add(1, name, "required column is missing")
    for name in {c for c in columns if columns.count(c) > 1}:
        problems.add(1, name, "column appears twice")
    problems.raise_if_any("CSV file")

    given = frozenset({"metadata" if c.startswith(METADATA_PREFIX) else c for c in columns} | {"id", "kind"})
    sensors: list[tuple[int, ImportRow]] = []
    row_number = 1
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.add(start, None, f"not valid CSV: {exc}")
            break
        row_number = start
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            problems.add(row_number, None, f"expected {len(columns)} columns, got {len(cells)}")
            continue
        raw: dict[str, Any] = {"metadata": {}}
        for name, cell in zip(columns, cells, strict=True):
            value = cell.strip()
            if name.startswith(METADATA_PREFIX):
                if value:
                    raw["metadata"][name[len(METADATA_PREFIX) :]] = value
            elif name in ("lat", "lon"):
                raw[name] = _number(value, name, row_number, problems) if value else None
            elif name == "tags":
                raw["tags"] = [t.strip() for t in value.split(";") if t.strip()]
            else:
                raw[name] = value or None
        sensor = _validate(raw, row_number, problems)
        if sensor is not None:
            sensors.append((row_number, ImportRow(sensor, given)))
    _check_ids(sensors, problems)
    problems.raise_if_any("CSV file")
    return [row for _, row in sensors]


_KNOWN_PROPERTIES = ("id", "kind", "address", "district", "tags", "gateway", "metadata")


def _feature(feature: Any, number: int, problems: _Problems) -> dict[str, Any] | None:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.add(number, None, "expected a GeoJSON Feature object")
        return None
    props = feature.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        problems.add(number, "properties", "expected an object")
        return None
    raw: dict[str, Any] = {k: v for k, v in props.items() if k in _KNOWN_PROPERTIES and k != "metadata"}
    extras = {k: v for k, v in props.items() if k not in _KNOWN_PROPERTIES and v is not None}
    metadata = props.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        problems.add(number, "properties.metadata", "expected an object")
        return None
    raw["metadata"] = {**extras, **(metadata or {})}
    if raw.get("id") is None and feature.get("id") is not None:
        raw["id"] = feature["id"]
    if isinstance(raw.get("id"), int | float) and not isinstance(raw.get("id"), bool):
        raw["id"] = str(raw["id"])
    if isinstance(raw.get("tags"), str):
        raw["tags"] = [t.strip() for t in raw["tags"].split(";") if t.strip()]
    geometry = feature.get("geometry")
    if "geometry" in feature:
        # A null geometry clears the location; a feature without the member leaves it.
        raw["lat"] = raw["lon"] = None
    if geometry is not None:
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") != "Point":
            problems.add(number, "geometry", "expected a Point geometry (or null)")
            return None
        if (
            not isinstance(coords, list)
            or len(coords) not in (2, 3)
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coords)
        ):
            problems.add(number, "geometry.coordinates", "expected [lon, lat] in degrees")
            return None
        raw["lon"], raw["lat"] = float(coords[0]), float(coords[1])
    return raw


def parse_geojson(data: bytes) -> list[ImportRow]:
    """The sensors of a GeoJSON FeatureCollection; ``Invalid`` with every problem otherwise."""
    text = _decode(data)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(
            "GeoJSON file rejected, nothing imported: "
            f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if (
        not isinstance(doc, dict)
        or doc.get("type") != "FeatureCollection"
        or not isinstance(doc.get("features"), list)
    ):
        raise Invalid(
            "GeoJSON file rejected, nothing imported: expected a FeatureCollection with a 'features' list"
        )
    problems = _Problems("feature")
    sensors: list[tuple[int, ImportRow]] = []
    for number, feature in enumerate(doc["features"], start=1):
        raw = _feature(feature, number, problems)
        if raw is None:
            continue
        given = frozenset(raw) | {"id", "kind"}
        if not raw["metadata"]:
            given -= {"metadata"}
        sensor = _validate(raw, number, problems)
        if sensor is not None:
            sensors.append((number, ImportRow(sensor, given)))
    _check_ids(sensors, problems)
    problems.raise_if_any("GeoJSON file")
    return [row for _, row in sensors]
