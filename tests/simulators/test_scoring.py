"""Precision, recall and time to detection by the documented matching rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sense311.errors import ConfigError
from simulators import Detection, Episode, score

T0 = datetime(2024, 3, 4, 18, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)
H = 3_600_000


def ep(eid: str, kind: str, sensors: list[str], start_h: float, end_h: float) -> Episode:
    return Episode(eid, kind, sensors, MS + int(start_h * H), MS + int(end_h * H))


EPISODES = [
    ep("e1", "lamp_out", ["a"], 0, 12),
    ep("e2", "lamp_out", ["b"], 0, 12),
    ep("e3", "circuit_outage", ["c", "d", "e"], 2, 5),
    ep("e4", "bin_overflow", ["x"], 0, 4),
]


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_recall_precision_and_time_to_detection() -> None:
    detections = [
        ("a", "lamp_out", at(0.5)),  # e1 after 30 min
        ("a", "lamp_out", at(3)),  # e1 again: a true positive, not a second episode
        ("b", "lamp_out", at(12.5)),  # e2 within the grace hour
        ("z", "lamp_out", at(1)),  # no episode on z: false positive
        ("d", "circuit_outage", at(2.25)),  # any lamp of the circuit counts
    ]
    report = score(EPISODES, detections)
    lamp = report.by_kind["lamp_out"]
    assert (lamp.episodes, lamp.detected, lamp.recall) == (2, 2, 1.0)
    assert (lamp.true_positives, lamp.false_positives, lamp.precision) == (3, 1, 0.75)
    assert lamp.median_ttd_s == pytest.approx((1800 + 45000) / 2)
    circuit = report.by_kind["circuit_outage"]
    assert circuit.recall == 1.0 and circuit.median_ttd_s == 900
    overflow = report.by_kind["bin_overflow"]
    assert overflow.recall == 0.0 and overflow.precision is None and overflow.median_ttd_s is None


def test_outside_the_grace_period_is_a_miss_and_a_false_alarm() -> None:
    report = score(EPISODES, [("a", "lamp_out", at(13.5))], grace=timedelta(hours=1))
    assert report.by_kind["lamp_out"].detected == 0
    assert report.by_kind["lamp_out"].false_positives == 1
    report = score(EPISODES, [("a", "lamp_out", at(13.5))], grace=timedelta(hours=2))
    assert report.by_kind["lamp_out"].detected == 1


def test_before_the_start_does_not_count() -> None:
    report = score(EPISODES, [("x", "bin_overflow", at(-0.1))])
    assert report.by_kind["bin_overflow"].detected == 0


def test_a_problem_mapped_to_several_kinds() -> None:
    mapping = {"lamp_dark": ["lamp_out", "circuit_outage"], "bin_full": "bin_overflow"}
    detections = [
        Detection("c", "lamp_dark", at(3)),  # explains the circuit outage: no false alarm for lamp_out
        {"sensor_id": "a", "problem": "lamp_dark", "time": "2024-03-04T19:00:00Z"},
        ("y", "bin_full", at(1)),
        ("q", "something_else", at(1)),
    ]
    report = score(EPISODES, detections, mapping=mapping)
    assert report.by_kind["lamp_out"].false_positives == 0
    assert report.by_kind["lamp_out"].true_positives == 1
    assert report.by_kind["circuit_outage"].true_positives == 1
    assert report.by_kind["circuit_outage"].false_positives == 0
    assert report.by_kind["bin_overflow"].false_positives == 1
    assert [d.problem for d in report.unmapped] == ["something_else"]
    assert report.to_json()["unmapped_detections"] == 1


def test_a_naive_detection_time_is_refused() -> None:
    with pytest.raises(ConfigError, match="aware datetime"):
        score(EPISODES, [("a", "lamp_out", datetime(2024, 3, 4, 19))])
