"""Bulk import: CSV and GeoJSON, all rows or none, problems named by row."""

from __future__ import annotations

import json

import pytest

from sense311.api.sensors import MULTIPART
from tests.api.conftest import Api, add_sensors

CSV = b"""id,kind,lat,lon,address,district,tags,gateway,metadata.bin_id,metadata.capacity_l
centrum/bin-0001,bin,52.3731,4.8922,Dam 1,centrum,underground;paper,gw-1,B-17,3000
centrum/bin-0002,bin,52.3740,4.8930,"Dam 2, rear",centrum,,gw-1,B-18,
west/light-0001,light,,,,west,,,,
"""


def _count(api: Api) -> int:
    return int(api.db.execute("SELECT count(*) FROM sensors").fetchone()[0])


def test_csv_import_creates_and_updates(api: Api) -> None:
    add_sensors(api.db, {"id": "west/light-0001", "kind": "lamp"})
    response = api.http.post(
        "/api/v1/sensor-imports", content=CSV, headers={**api.auth("write"), "Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"format": "csv", "rows": 3, "created": 2, "updated": 1, "dry_run": False}
    first = api.http.get("/api/v1/sensors/centrum/bin-0001").json()
    assert first["tags"] == ["underground", "paper"]
    assert first["metadata"] == {"bin_id": "B-17", "capacity_l": "3000"}
    assert first["lat"] == 52.3731 and first["gateway"] == "gw-1"
    second = api.http.get("/api/v1/sensors/centrum/bin-0002").json()
    assert second["address"] == "Dam 2, rear" and second["metadata"] == {"bin_id": "B-18"}
    light = api.http.get("/api/v1/sensors/west/light-0001").json()
    assert light["kind"] == "light" and light["lat"] is None


def test_an_update_changes_only_what_the_file_gives(api: Api) -> None:
    add_sensors(
        api.db,
        {
            "id": "bin-1",
            "kind": "bin",
            "lat": 52.0,
            "lon": 4.0,
            "district": "old",
            "metadata": {"keep": 1, "bin_id": "A"},
        },
    )
    api.db.execute("UPDATE sensors SET address = 'Dam 1', gateway = 'gw-7'")
    headers = {**api.auth("write"), "Content-Type": "text/csv"}
    body = b"id,kind,district,lat,lon,metadata.bin_id\nbin-1,bin,,52.5,4.5,B\n"
    response = api.http.post("/api/v1/sensor-imports", content=body, headers=headers)
    assert response.json()["updated"] == 1
    sensor = api.http.get("/api/v1/sensors/bin-1").json()
    assert (sensor["lat"], sensor["lon"], sensor["district"]) == (52.5, 4.5, None)  # given; empty clears
    assert (sensor["address"], sensor["gateway"]) == ("Dam 1", "gw-7")  # not in the file: kept
    assert sensor["metadata"] == {"keep": 1, "bin_id": "B"}  # merged


def test_a_bad_row_rejects_the_whole_file(api: Api) -> None:
    bad = CSV + b"centrum/bin-0003,bin,95.0,4.89,,,,,,\n" + b"centrum/bin-0004,,52.1,4.8,,,,,,\n"
    response = api.http.post(
        "/api/v1/sensor-imports", content=bad, headers={**api.auth("write"), "Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"].startswith("CSV file rejected, nothing imported: row 5: 'lat': ")
    assert body["error"].endswith("(and 1 more)")
    assert [(d["row"], d["field"]) for d in body["details"]] == [(5, "lat"), (6, "kind")]
    assert _count(api) == 0


def test_csv_header_and_shape_problems(api: Api) -> None:
    headers = {**api.auth("write"), "Content-Type": "text/csv"}
    typo = api.http.post("/api/v1/sensor-imports", content=b"id,knd,lat\nx,bin,1\n", headers=headers)
    assert typo.status_code == 422
    assert "row 1: 'knd': unknown column; did you mean 'kind'?" in typo.json()["error"]

    ragged = api.http.post(
        "/api/v1/sensor-imports", content=b"id,kind\na,bin\nb,bin,extra\n", headers=headers
    )
    assert "row 3: expected 2 columns, got 3" in ragged.json()["error"]

    duplicate = api.http.post("/api/v1/sensor-imports", content=b"id,kind\na,bin\na,light\n", headers=headers)
    assert "row 3: 'id': duplicate sensor id 'a' (first at row 2)" in duplicate.json()["error"]

    latin1 = api.http.post(
        "/api/v1/sensor-imports", content="id,kind\nstraße,bin\n".encode("latin-1"), headers=headers
    )
    assert latin1.status_code == 422 and "not UTF-8" in latin1.json()["error"]

    unknown_type = api.http.post(
        "/api/v1/sensor-imports",
        content=b"id,kind\n",
        headers={**api.auth("write"), "Content-Type": "text/html"},
    )
    assert unknown_type.status_code == 415
    assert _count(api) == 0


def test_geojson_import_and_a_bad_feature(api: Api) -> None:
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [4.8922, 52.3731]},
            "properties": {
                "id": "bin-1",
                "kind": "bin",
                "tags": ["a", "b"],
                "bin_id": "B-1",
                "district": "centrum",
            },
        },
        {
            "type": "Feature",
            "id": 42,
            "geometry": None,
            "properties": {"kind": "light", "tags": "x;y", "metadata": {"pole": "P-42"}},
        },
    ]
    doc = {"type": "FeatureCollection", "features": features}
    headers = {**api.auth("write"), "Content-Type": "application/geo+json"}
    response = api.http.post("/api/v1/sensor-imports", content=json.dumps(doc), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2
    one = api.http.get("/api/v1/sensors/bin-1").json()
    assert (one["lat"], one["lon"]) == (52.3731, 4.8922)
    assert one["metadata"] == {"bin_id": "B-1"} and one["tags"] == ["a", "b"]
    assert api.http.get("/api/v1/sensors/42").json()["metadata"] == {"pole": "P-42"}

    features.append(
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": []}, "properties": {}}
    )
    features.append(
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [200, 10]},
            "properties": {"id": "z", "kind": "bin"},
        }
    )
    rejected = api.http.post("/api/v1/sensor-imports", content=json.dumps(doc), headers=headers)
    assert rejected.status_code == 422
    assert rejected.json()["error"].startswith(
        "GeoJSON file rejected, nothing imported: feature 3: 'geometry':"
    )
    assert [d["feature"] for d in rejected.json()["details"]] == [3, 4]

    broken = api.http.post(
        "/api/v1/sensor-imports", content=b'{"type": "FeatureCollection",', headers=headers
    )
    assert broken.status_code == 422 and "not valid JSON at line 1" in broken.json()["error"]


@pytest.mark.skipif(not MULTIPART, reason="python-multipart is not installed: forms cannot be read")
def test_multipart_upload_and_dry_run(api: Api) -> None:
    files = {"file": ("registry.csv", CSV, "text/csv")}
    dry = api.http.post(
        "/api/v1/sensor-imports", params={"dry_run": "true"}, files=files, headers=api.auth("write")
    )
    assert dry.status_code == 200, dry.text
    assert dry.json() == {"format": "csv", "rows": 3, "created": 3, "updated": 0, "dry_run": True}
    assert _count(api) == 0
    # Other form fields (tools add their own) are ignored.
    real = api.http.post(
        "/api/v1/sensor-imports", files=files, data={"source": "gis"}, headers=api.auth("write")
    )
    assert real.json()["created"] == 3 and _count(api) == 3


def test_uploads_are_bounded(api_server: object) -> None:
    api = api_server(max_upload_bytes=2048)  # type: ignore[operator]
    big = b"id,kind\n" + b"".join(f"s{i},bin\n".encode() for i in range(1000))
    response = api.http.post(
        "/api/v1/sensor-imports", content=big, headers={**api.auth("write"), "Content-Type": "text/csv"}
    )
    assert response.status_code == 413 and "at most 2048" in response.json()["error"]
