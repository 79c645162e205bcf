"""The registry over HTTP: create, read, list with filters and pages, replace, change, delete."""

from __future__ import annotations

from tests.api.conftest import T0, Api, add_incident, add_readings, add_sensors


def test_create_read_update_delete(api: Api) -> None:
    write = api.auth("write")
    sensor = {
        "id": "centrum/bin-0001",
        "kind": "bin",
        "lat": 52.37,
        "lon": 4.89,
        "address": "Dam 1",
        "district": "centrum",
        "tags": ["underground", "paper"],
        "gateway": "gw-1",
        "metadata": {"capacity_l": 3000},
    }
    created = api.http.post("/api/v1/sensors", json=sensor, headers=write)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "centrum/bin-0001"

    again = api.http.post("/api/v1/sensors", json=sensor, headers=write)
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]

    # Ids contain '/', so they are the rest of the path.
    got = api.http.get("/api/v1/sensors/centrum/bin-0001")
    assert got.status_code == 200
    body = got.json()
    assert body["tags"] == ["underground", "paper"] and body["metadata"] == {"capacity_l": 3000}
    assert body["latest"] == [] and body["open_problems"] == []

    patched = api.http.patch(
        "/api/v1/sensors/centrum/bin-0001", json={"address": None, "tags": ["paper"]}, headers=write
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["address"] is None and patched.json()["tags"] == ["paper"]
    assert patched.json()["kind"] == "bin" and patched.json()["lat"] == 52.37

    replaced = api.http.put("/api/v1/sensors/centrum/bin-0001", json={"kind": "bin"}, headers=write)
    assert replaced.status_code == 200
    assert replaced.json()["lat"] is None and replaced.json()["metadata"] == {}

    new = api.http.put(
        "/api/v1/sensors/west/light-1", json={"kind": "light", "lat": 52.0, "lon": 4.0}, headers=write
    )
    assert new.status_code == 201

    deleted = api.http.delete("/api/v1/sensors/centrum/bin-0001", headers=write)
    assert deleted.status_code == 204
    assert api.http.get("/api/v1/sensors/centrum/bin-0001").status_code == 404
    gone = api.http.delete("/api/v1/sensors/centrum/bin-0001", headers=write)
    assert gone.status_code == 404
    assert gone.json() == {"error": "no sensor 'centrum/bin-0001' in the registry"}


def test_invalid_sensors_are_refused_with_one_line(api: Api) -> None:
    write = api.auth("write")
    cases = [
        ({"id": "a", "kind": "bin", "lat": 95, "lon": 4}, "body field 'lat'"),
        ({"id": "a", "kind": "bin", "lat": 52}, "give both 'lat' and 'lon'"),
        ({"id": "has space", "kind": "bin"}, "no spaces"),
        ({"id": "a", "kind": "bin", "tags": ["a;b"]}, "without ';'"),
        ({"id": "a", "kind": "bin\u0000"}, "NUL"),
        ({"id": "a"}, "body field 'kind': required"),
        ({"id": "a", "kind": "bin", "colour": "red"}, "body field 'colour'"),
    ]
    for body, expected in cases:
        response = api.http.post("/api/v1/sensors", json=body, headers=write)
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert expected in error, (body, error)
        assert "\n" not in error
    patch = api.http.patch("/api/v1/sensors/x", json={"kind": None}, headers=write)
    assert patch.status_code == 422


def test_list_filters_and_pages(api: Api) -> None:
    add_sensors(
        api.db,
        *[
            {
                "id": f"bin-{i:02d}",
                "kind": "bin",
                "district": "north" if i % 2 else "south",
                "tags": ["a", "b"] if i < 4 else ["a"],
            }
            for i in range(10)
        ],
        {"id": "light-01", "kind": "light", "district": "north"},
    )
    everything = api.http.get("/api/v1/sensors").json()
    assert everything["total"] == 11 and len(everything["items"]) == 11

    bins = api.http.get("/api/v1/sensors", params={"kind": "bin", "district": "north"}).json()
    assert [s["id"] for s in bins["items"]] == ["bin-01", "bin-03", "bin-05", "bin-07", "bin-09"]

    tagged = api.http.get("/api/v1/sensors", params=[("tag", "a"), ("tag", "b")]).json()
    assert [s["id"] for s in tagged["items"]] == ["bin-00", "bin-01", "bin-02", "bin-03"]

    page = api.http.get("/api/v1/sensors", params={"limit": 3, "offset": 9}).json()
    assert page["total"] == 11 and [s["id"] for s in page["items"]] == ["bin-09", "light-01"]

    too_many = api.http.get("/api/v1/sensors", params={"limit": 5000})
    assert too_many.status_code == 422 and "at most 1000" in too_many.json()["error"]


def test_sensor_states_for_the_map(api_server: object) -> None:
    api = api_server(app_kwargs={"clock": lambda: T0})  # type: ignore[operator]
    add_sensors(
        api.db,
        {"id": "ok", "kind": "bin", "lat": 52.0, "lon": 4.0},
        {"id": "stale", "kind": "bin", "lat": 52.1, "lon": 4.1},
        {"id": "firing", "kind": "bin", "lat": 52.2, "lon": 4.2},
        {"id": "resolved", "kind": "bin"},
        {"id": "new", "kind": "bin"},
    )
    add_readings(
        api.db,
        [
            (T0, "ok", "fill_level", 0.4),
            (T0 - __import__("datetime").timedelta(hours=3), "stale", "fill_level", 0.4),
            (T0, "firing", "fill_level", 0.99),
            (T0, "resolved", "fill_level", 0.5),
        ],
    )
    add_incident(api.db, "firing")
    add_incident(api.db, "resolved", sensor_state="resolved")
    states = {s["id"]: s for s in api.http.get("/api/v1/sensor-states").json()}
    assert {k: v["state"] for k, v in states.items()} == {
        "ok": "ok",
        "stale": "stale",
        "firing": "firing",
        "resolved": "resolved",
        "new": "unknown",
    }
    assert states["firing"]["problems"] == ["bin_overflow"]
    detail = api.http.get("/api/v1/sensors/firing").json()
    assert detail["open_problems"] == ["bin_overflow"]
    assert [r["metric"] for r in detail["latest"]] == ["fill_level"]
