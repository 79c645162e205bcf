"""Would-be incidents and tickets: one per (problem, sensor), nearby ones grouped, versions matched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rules.incidents import build_incidents, group_tickets, match_incidents
from sense311.types import Detection

T = datetime(2026, 6, 1, 20, tzinfo=UTC)


def det(rule: str, sensor: str, minute: int, kind: str = "detection", problem: str = "lamp_out") -> Detection:
    return Detection(rule, "v1", sensor, problem, kind, T + timedelta(minutes=minute))


def test_detections_of_one_problem_and_sensor_share_an_incident_until_all_resolve() -> None:
    incidents = build_incidents(
        [
            det("a", "l1", 0),
            det("b", "l1", 5),
            det("a", "l1", 10, "resolution"),
            det("b", "l1", 20, "resolution"),
            det("a", "l1", 30),
            det("a", "l2", 1, problem="flicker"),
        ]
    )
    assert [(i.sensor_id, i.problem, i.detections, i.closed_at) for i in incidents] == [
        ("l1", "lamp_out", 2, T + timedelta(minutes=20)),
        ("l2", "flicker", 1, None),
        ("l1", "lamp_out", 1, None),
    ]


def test_nearby_incidents_of_one_problem_group_into_one_ticket() -> None:
    incidents = build_incidents(
        [det("a", f"l{i}", i) for i in range(4)] + [det("a", "far", 2), det("a", "l9", 200)]
    )
    # l0..l3 35 m apart chain into one ticket; "far" is 5 km away; l9 comes after the window.
    locations = {f"l{i}": (52.37 + i * 35 / 111_320, 4.89) for i in range(10)} | {"far": (52.42, 4.89)}
    tickets = group_tickets(incidents, locations)
    assert [t.sensors for t in tickets] == [["l0", "l1", "l2", "l3"], ["far"], ["l9"]]


def test_matching_two_versions() -> None:
    old = build_incidents([det("a", "l1", 0), det("a", "l2", 0)])
    new = build_incidents([det("a", "l1", 10), det("a", "l3", 0)])
    gone, appeared, kept = match_incidents(old, new)
    assert [i.sensor_id for i in gone] == ["l2"]
    assert [i.sensor_id for i in appeared] == ["l3"]
    assert [(a.opened_at, b.opened_at) for a, b in kept] == [(T, T + timedelta(minutes=10))]
