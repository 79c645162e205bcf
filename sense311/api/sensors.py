"""/api/v1/sensors: the device registry — list, read, create, replace, change, delete, import.

Imports are ``POST /api/v1/sensor-imports`` rather than a path below ``/sensors``, where any
name could also be a sensor's id.

Sensor ids may contain '/' (``centrum/bin-0001``), so they are the rest of the path; the
readings of a sensor are therefore at ``/api/v1/readings?sensor_id=…``, not below it.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from sense311.api.auth import require
from sense311.api.body import media_type, read_body
from sense311.api.context import AppContext, get_context, get_db
from sense311.api.errors import (
    ERROR_RESPONSES,
    Conflict,
    ErrorBody,
    Invalid,
    NotFound,
    TooLarge,
    UnsupportedMedia,
)
from sense311.api.models import Page, Text
from sense311.api.sensor_import import ImportRow, parse_csv, parse_geojson
from sense311.api.sensor_models import (
    LatestReading,
    SensorDetail,
    SensorFields,
    SensorIn,
    SensorOut,
    SensorPatch,
    SensorState,
    check_sensor_id,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["sensors"], responses=ERROR_RESPONSES)
Db = Annotated[psycopg.Connection[Any], Depends(get_db)]
Ctx = Annotated[AppContext, Depends(get_context)]
READ = [Depends(require("read"))]
WRITE = [Depends(require("write"))]

_FIELDS = ("kind", "lat", "lon", "address", "district", "tags", "gateway", "metadata")
_COLUMNS = "id, kind, lat, lon, address, district, tags, gateway, metadata, created_at, updated_at"
#: Sensors the map endpoint returns at most: ~150 bytes of JSON each, so about 7 MB.
MAX_MAP_SENSORS = 50_000
MAX_OFFSET = 2**31 - 1
#: Form fields besides the file that an upload may carry (and that are ignored): browsers and
#: tools add a few of their own.
MAX_FORM_FIELDS = 10
#: Forms need python-multipart; without it uploads still work as a plain body.
MULTIPART = any(importlib.util.find_spec(name) for name in ("python_multipart", "multipart"))


class ImportResult(BaseModel):
    format: Literal["csv", "geojson"]
    rows: int
    created: int
    updated: int
    dry_run: bool


def _sensor_id(value: str) -> str:
    try:
        return check_sensor_id(value)
    except ValueError as exc:
        raise Invalid(f"path parameter 'sensor_id': {exc}") from None


def _page_limit(ctx: AppContext, limit: int) -> int:
    if limit > ctx.api.max_page_size:
        raise Invalid(f"query parameter 'limit': at most {ctx.api.max_page_size} items per page, got {limit}")
    return limit


def _filters(
    kind: list[str] | None, district: list[str] | None, tag: list[str] | None
) -> tuple[sql.Composable, dict[str, Any]]:
    clauses = [sql.SQL("true")]
    params: dict[str, Any] = {}
    if kind:
        clauses.append(sql.SQL("kind = ANY(%(kind)s)"))
        params["kind"] = kind
    if district:
        clauses.append(sql.SQL("district = ANY(%(district)s)"))
        params["district"] = district
    if tag:
        clauses.append(sql.SQL("tags @> %(tag)s::text[]"))
        params["tag"] = tag
    return sql.SQL(" AND ").join(clauses), params


KindQ = Annotated[list[Text] | None, Query(description="Only these kinds (repeatable: any of).")]
DistrictQ = Annotated[list[Text] | None, Query(description="Only these districts (repeatable: any of).")]
TagQ = Annotated[list[Text] | None, Query(description="Only sensors with these tags (repeatable: all of).")]


@router.get("/sensors", dependencies=READ, summary="List sensors")
def list_sensors(
    ctx: Ctx,
    db: Db,
    kind: KindQ = None,
    district: DistrictQ = None,
    tag: TagQ = None,
    limit: Annotated[int, Query(ge=1, description="Items per page (at most api.max_page_size).")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[SensorOut]:
    """Sensors ordered by id, filtered by kind, district and tags."""
    _page_limit(ctx, limit)
    where, params = _filters(kind, district, tag)
    with db.cursor(row_factory=dict_row) as cur:
        total = cur.execute(
            sql.SQL("SELECT count(*) AS n FROM sensors WHERE {}").format(where), params
        ).fetchone()
        rows = cur.execute(
            sql.SQL("SELECT {} FROM sensors WHERE {} ORDER BY id LIMIT %(limit)s OFFSET %(offset)s").format(
                sql.SQL(_COLUMNS), where
            ),
            {**params, "limit": limit, "offset": offset},
        ).fetchall()
    return Page[SensorOut](
        items=[SensorOut(**r) for r in rows], total=total["n"] if total else 0, limit=limit, offset=offset
    )


@router.get("/sensor-states", dependencies=READ, summary="Sensors with their state, for a map")
def sensor_states(
    ctx: Ctx, db: Db, kind: KindQ = None, district: DistrictQ = None, tag: TagQ = None
) -> list[SensorState]:
    """Every sensor with its state (see the schema), open problems and last reading time."""
    where, params = _filters(kind, district, tag)
    query = sql.SQL(
        """WITH last AS (SELECT sensor_id, max(time) AS last_time FROM latest_readings GROUP BY sensor_id),
                open AS (SELECT sensor_id, array_agg(DISTINCT problem ORDER BY problem) AS problems,
                                bool_or(sensor_state = 'firing') AS firing
                         FROM incidents WHERE status = 'open' GROUP BY sensor_id)
           SELECT s.id, s.kind, s.lat, s.lon, s.address, s.district, l.last_time,
                  coalesce(o.problems, '{{}}') AS problems, o.firing
           FROM (SELECT * FROM sensors WHERE {}) s
           LEFT JOIN last l ON l.sensor_id = s.id
           LEFT JOIN open o ON o.sensor_id = s.id
           ORDER BY s.id LIMIT %(limit)s"""
    ).format(where)
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, {**params, "limit": MAX_MAP_SENSORS}).fetchall()
    now = ctx.clock()
    out = []
    for r in rows:
        if r["firing"] is not None:
            state = "firing" if r["firing"] else "resolved"
        elif r["last_time"] is None:
            state = "unknown"
        elif now - r["last_time"] > ctx.api.stale_after:
            state = "stale"
        else:
            state = "ok"
        out.append(
            SensorState(
                id=r["id"],
                kind=r["kind"],
                lat=r["lat"],
                lon=r["lon"],
                address=r["address"],
                district=r["district"],
                state=state,
                problems=r["problems"],
                last_reading_at=r["last_time"],
            )
        )
    return out


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "The file, as the body or as the 'file' field of a form.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/geo+json": {"schema": {"type": "object"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    },
    "responses": {
        "413": {"description": "The file is larger than api.max_upload_bytes"},
        "415": {"description": "Neither CSV nor GeoJSON"},
    },
}


@router.post(
    "/sensor-imports",
    dependencies=WRITE,
    summary="Import sensors from CSV or GeoJSON",
    openapi_extra=_IMPORT_BODY,
)
async def import_sensors(
    request: Request,
    ctx: Ctx,
    format: Annotated[
        Literal["csv", "geojson"] | None,
        Query(description="The file's format; default: from its content type."),
    ] = None,
    dry_run: Annotated[bool, Query(description="Validate and count, write nothing.")] = False,
) -> ImportResult:
    """Create or update every sensor of the file in one transaction, or none.

    CSV columns: ``id,kind,lat,lon,address,district,tags,gateway`` (tags ``;``-separated) plus
    ``metadata.<key>``. GeoJSON: a FeatureCollection of Points whose properties carry the same
    fields. A bad row rejects the whole file; the error names its row (CSV: the header is row 1)
    or feature (from 1). An existing sensor takes the fields the file gives (an empty value
    clears one) and keeps the others; metadata keys are merged into its metadata.
    """
    data, kind = await _read_upload(request, ctx.api.max_upload_bytes, format)
    rows = parse_csv(data) if kind == "csv" else parse_geojson(data)
    created, updated = await run_in_threadpool(_upsert, ctx, rows, dry_run)
    return ImportResult(format=kind, rows=len(rows), created=created, updated=updated, dry_run=dry_run)


_CONTENT_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/geo+json": "geojson",
    "application/json": "geojson",
}


async def _read_upload(request: Request, limit: int, fmt: str | None) -> tuple[bytes, str]:
    media = media_type(request)
    if media == "multipart/form-data":
        if not MULTIPART:
            raise UnsupportedMedia(
                "this server cannot read forms (python-multipart is not installed); "
                "send the file as the body with Content-Type text/csv or application/geo+json"
            )
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Invalid("the form has no 'file' field holding the file")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"the file is larger than the {limit} bytes accepted (api.max_upload_bytes)")
        name = (upload.filename or "").lower()
        guessed = (
            "csv" if name.endswith(".csv") else "geojson" if name.endswith((".geojson", ".json")) else None
        )
        guessed = guessed or _CONTENT_TYPES.get((upload.content_type or "").lower())
    else:
        data = await read_body(request, limit)
        guessed = _CONTENT_TYPES.get(media)
    chosen = fmt or guessed
    if chosen is None:
        raise UnsupportedMedia(
            f"cannot tell the file's format from content type {media or '(none)'!r}; send text/csv or "
            "application/geo+json, or add ?format=csv|geojson"
        )
    return data, chosen


_OPTIONAL = ("lat", "lon", "address", "district", "tags", "gateway")


def _upsert(ctx: AppContext, rows: list[ImportRow], dry_run: bool) -> tuple[int, int]:
    if not rows:
        return 0, 0
    data = [{**r.sensor.model_dump(), "fields": sorted(r.fields)} for r in rows]
    keep = ",\n".join(f"{f} = CASE WHEN '{f}' = ANY(d.fields) THEN d.{f} ELSE s.{f} END" for f in _OPTIONAL)
    counts = (0, 0)
    with ctx.connection() as conn, conn.transaction():
        # Counts stay exact only if no one else adds sensors meanwhile; ingest's auto-registration
        # waits for the import (a file of 10,000 sensors takes well under a second).
        conn.execute("LOCK TABLE sensors IN SHARE ROW EXCLUSIVE MODE")
        # One statement for the whole file: the jsonb array becomes rows; existing sensors take
        # the fields their row gives, the others are inserted.
        row = conn.execute(
            f"""WITH d AS (
                    SELECT * FROM jsonb_to_recordset(%s) AS x(
                        id text, kind text, lat float8, lon float8, address text, district text,
                        tags text[], gateway text, metadata jsonb, fields text[])),
                updated AS (
                    UPDATE sensors s SET
                        kind = d.kind,
                        {keep},
                        metadata = CASE WHEN 'metadata' = ANY(d.fields) THEN s.metadata || d.metadata
                                        ELSE s.metadata END,
                        updated_at = now()
                    FROM d WHERE s.id = d.id
                    RETURNING s.id),
                inserted AS (
                    INSERT INTO sensors (id, kind, lat, lon, address, district, tags, gateway, metadata)
                    SELECT id, kind, lat, lon, address, district, coalesce(tags, '{{}}'), gateway,
                           coalesce(metadata, '{{}}')
                    FROM d WHERE NOT EXISTS (SELECT 1 FROM sensors s WHERE s.id = d.id)
                    RETURNING id)
                SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM updated)""",
            (Jsonb(data),),
        ).fetchone()
        assert row is not None
        counts = (int(row[0]), int(row[1]))
        if dry_run:
            raise psycopg.Rollback()
    return counts


def _row(db: psycopg.Connection[Any], sensor_id: str, lock: bool = False) -> dict[str, Any] | None:
    suffix = " FOR UPDATE" if lock else ""
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM sensors WHERE id = %s{suffix}", (sensor_id,)).fetchone()


def _write(db: psycopg.Connection[Any], sensor_id: str, fields: SensorFields) -> tuple[dict[str, Any], bool]:
    values = fields.model_dump()
    values["metadata"] = Jsonb(values["metadata"])
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""INSERT INTO sensors (id, {", ".join(_FIELDS)})
                VALUES (%(id)s, {", ".join(f"%({f})s" for f in _FIELDS)})
                ON CONFLICT (id) DO UPDATE SET {", ".join(f"{f} = EXCLUDED.{f}" for f in _FIELDS)},
                    updated_at = now()
                RETURNING {_COLUMNS}, (xmax = 0) AS created""",
            {**values, "id": sensor_id},
        ).fetchone()
    assert row is not None
    created = row.pop("created")
    return row, created


@router.get("/sensors/{sensor_id:path}", dependencies=READ, summary="One sensor")
def get_sensor(db: Db, sensor_id: str) -> SensorDetail:
    """The sensor's registry entry, its latest value per metric and its open problems."""
    _sensor_id(sensor_id)
    row = _row(db, sensor_id)
    if row is None:
        raise NotFound(f"no sensor {sensor_id!r} in the registry")
    with db.cursor(row_factory=dict_row) as cur:
        latest = cur.execute(
            "SELECT metric, time, value, received_at FROM latest_readings "
            "WHERE sensor_id = %s ORDER BY metric",
            (sensor_id,),
        ).fetchall()
        problems = cur.execute(
            "SELECT DISTINCT problem FROM incidents WHERE sensor_id = %s AND status = 'open' "
            "ORDER BY problem",
            (sensor_id,),
        ).fetchall()
    return SensorDetail(
        **row, latest=[LatestReading(**r) for r in latest], open_problems=[p["problem"] for p in problems]
    )


@router.post(
    "/sensors",
    dependencies=WRITE,
    status_code=201,
    summary="Register a sensor",
    responses={409: {"model": ErrorBody, "description": "A sensor with this id exists"}},
)
def create_sensor(db: Db, sensor: SensorIn) -> SensorOut:
    """Add a sensor to the registry; 409 when the id is taken (use PUT to replace)."""
    values = sensor.model_dump()
    values["metadata"] = Jsonb(values["metadata"])
    with db.transaction(), db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""INSERT INTO sensors (id, {", ".join(_FIELDS)})
                VALUES (%(id)s, {", ".join(f"%({f})s" for f in _FIELDS)})
                ON CONFLICT (id) DO NOTHING
                RETURNING {_COLUMNS}""",
            values,
        ).fetchone()
    if row is None:
        raise Conflict(f"sensor {sensor.id!r} already exists; PUT /api/v1/sensors/{sensor.id} replaces it")
    return SensorOut(**row)


@router.put(
    "/sensors/{sensor_id:path}",
    dependencies=WRITE,
    summary="Create or replace a sensor",
    responses={201: {"model": SensorOut, "description": "Created"}},
)
def put_sensor(db: Db, response: Response, sensor_id: str, sensor: SensorFields) -> SensorOut:
    """Set every field of the sensor (fields left out take their defaults); 201 when it is new."""
    _sensor_id(sensor_id)
    with db.transaction():
        row, created = _write(db, sensor_id, sensor)
    if created:
        response.status_code = 201
    return SensorOut(**row)


@router.patch("/sensors/{sensor_id:path}", dependencies=WRITE, summary="Change some fields of a sensor")
def patch_sensor(db: Db, sensor_id: str, patch: SensorPatch) -> SensorOut:
    """Change the fields sent; a field sent as null is cleared (not ``kind``)."""
    _sensor_id(sensor_id)
    if "kind" in patch.model_fields_set and patch.kind is None:
        raise Invalid("body field 'kind': cannot be cleared; every sensor has a kind")
    with db.transaction():
        current = _row(db, sensor_id, lock=True)
        if current is None:
            raise NotFound(f"no sensor {sensor_id!r} in the registry")
        merged = {f: current[f] for f in _FIELDS}
        for name in patch.model_fields_set:
            value = getattr(patch, name)
            merged[name] = (
                value if value is not None or name not in ("tags", "metadata") else type(merged[name])()
            )
        try:
            fields = SensorFields.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "sensor"
            message = str(first["msg"]).removeprefix("Value error, ")
            raise Invalid(f"the sensor would be invalid: '{where}': {message}") from None
        row, _ = _write(db, sensor_id, fields)
    return SensorOut(**row)


@router.delete("/sensors/{sensor_id:path}", dependencies=WRITE, status_code=204, summary="Delete a sensor")
def delete_sensor(db: Db, sensor_id: str) -> Response:
    """Remove the sensor from the registry. Its readings and incidents stay (history is kept)."""
    _sensor_id(sensor_id)
    with db.transaction():
        gone = db.execute("DELETE FROM sensors WHERE id = %s RETURNING id", (sensor_id,)).fetchone()
    if gone is None:
        raise NotFound(f"no sensor {sensor_id!r} in the registry")
    return Response(status_code=204)
