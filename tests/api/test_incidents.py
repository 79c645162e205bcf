"""Incidents, tickets and detections read from the ticketing tables."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import T0, Api, add_detection, add_incident, add_sensors, add_ticket


def _fill(api: Api) -> dict[str, int]:
    add_sensors(
        api.db,
        {"id": "bin-1", "kind": "bin", "lat": 52.37, "lon": 4.89, "district": "centrum"},
        {"id": "bin-2", "kind": "bin", "lat": 52.371, "lon": 4.891},
        {"id": "light-1", "kind": "light"},
    )
    ids = {
        "one": add_incident(api.db, "bin-1", evidence={"aggregate": "min", "value": 0.97}),
        "two": add_incident(api.db, "bin-2", sensor_state="resolved"),
        "dark": add_incident(api.db, "light-1", "lamp_out", severity="high"),
        "closed": add_incident(api.db, "bin-1", status="closed", first_seen=T0 - timedelta(days=2)),
    }
    ids["ticket"] = add_ticket(api.db, [ids["one"], ids["two"]])
    ids["lamp_ticket"] = add_ticket(
        api.db, [ids["dark"]], problem="lamp_out", status="pending", request_id=None
    )
    add_detection(api.db, "bin-1", T0)
    add_detection(api.db, "bin-1", T0 + timedelta(minutes=30), kind="resolution", value=0.5)
    add_detection(api.db, "bin-2", T0)
    return ids


def test_incidents_list_and_filters(api: Api) -> None:
    ids = _fill(api)
    everything = api.http.get("/api/v1/incidents").json()
    assert everything["total"] == 4
    assert [i["id"] for i in everything["items"]] == sorted(ids[k] for k in ("one", "two", "dark", "closed"))[
        ::-1
    ]

    def listed(**params: object) -> list[int]:
        return [i["id"] for i in api.http.get("/api/v1/incidents", params=params).json()["items"]]

    assert listed(status="open", problem="bin_overflow") == [ids["two"], ids["one"]]
    assert listed(sensor_id="bin-1") == [ids["closed"], ids["one"]]
    assert listed(sensor_state="resolved") == [ids["two"]]
    assert listed(problem="lamp_out") == [ids["dark"]]
    first = next(i for i in everything["items"] if i["id"] == ids["one"])
    assert first["ticket_id"] == ids["ticket"] and first["sensor_state"] == "firing"

    wrong = api.http.get("/api/v1/incidents", params={"status": "opne"})
    assert wrong.status_code == 422 and "query parameter 'status'" in wrong.json()["error"]


def test_incident_detail_has_evidence_ticket_and_detections(api: Api) -> None:
    ids = _fill(api)
    detail = api.http.get(f"/api/v1/incidents/{ids['one']}").json()
    assert detail["evidence"] == {"aggregate": "min", "value": 0.97}
    assert detail["ticket"]["id"] == ids["ticket"] and detail["ticket"]["members"] == 2
    assert [(d["kind"], d["sensor_id"]) for d in detail["history"]] == [
        ("detection", "bin-1"),
        ("resolution", "bin-1"),
    ]
    assert api.http.get("/api/v1/incidents/999999").status_code == 404
    assert api.http.get("/api/v1/incidents/0").status_code == 422


def test_tickets_list_and_detail(api: Api) -> None:
    ids = _fill(api)
    listed = api.http.get("/api/v1/tickets").json()
    assert [t["id"] for t in listed["items"]] == [ids["lamp_ticket"], ids["ticket"]]
    assert "token" not in listed["items"][0]  # the Open311 batch token is a secret

    def ticket_ids(**params: object) -> list[int]:
        return [t["id"] for t in api.http.get("/api/v1/tickets", params=params).json()["items"]]

    assert ticket_ids(status="pending") == [ids["lamp_ticket"]]
    assert ticket_ids(sensor_id="bin-2") == [ids["ticket"]]
    assert ticket_ids(problem="bin_overflow", status=["open", "sent"]) == [ids["ticket"]]

    detail = api.http.get(f"/api/v1/tickets/{ids['ticket']}").json()
    assert detail["service_request_id"] == "REQ-77" and detail["members"] == 2
    members = detail["members_detail"]
    assert [m["sensor_id"] for m in members] == ["bin-1", "bin-2"]
    assert members[0]["district"] == "centrum" and members[0]["evidence"]["value"] == 0.97
    assert [o["state"] for o in detail["outbox"]] == ["sent"]
    assert [h["status"] for h in detail["history"]] == ["pending", "open"]
    assert api.http.get("/api/v1/tickets/424242").json() == {"error": "no ticket 424242"}


def test_detections_by_sensor_and_range(api: Api) -> None:
    _fill(api)
    body = api.http.get("/api/v1/detections", params={"sensor_id": "bin-1"}).json()
    assert [d["kind"] for d in body["items"]] == ["resolution", "detection"]
    window = {"start": (T0 + timedelta(minutes=1)).isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}
    assert api.http.get("/api/v1/detections", params=window).json()["total"] == 1
    assert api.http.get("/api/v1/detections", params={"kind": "detection"}).json()["total"] == 2
