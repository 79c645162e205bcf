"""Score detections against the ground truth: per fault kind precision, recall, time to detection.

**Matching rule.** A detection ``(sensor_id, problem, time)`` matches an episode when

* the episode's kind is one the problem maps to (``mapping[problem]``; by default a problem
  maps to the fault kind of the same name),
* the sensor is one of the episode's sensors (any lamp of a circuit outage), and
* ``episode.start <= time <= episode.end + grace`` (``grace`` covers rules that need a
  ``for`` duration or evaluate late; default one hour).

Per fault kind ``K``:

* **recall** = episodes of ``K`` matched by at least one detection / episodes of ``K``;
* **precision** = detections mapped to ``K`` that match an episode of ``K`` / (those + the
  detections mapped to ``K`` that match no episode of *any* kind their problem maps to). A
  detection that explains another mapped kind's episode is not a false alarm for ``K``;
* **median time to detection** (s) over detected episodes of the earliest matching detection
  minus the episode start (0 when a detection lands exactly at the start).

A ratio with an empty denominator is ``None``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sense311.errors import ConfigError
from simulators.faults import Episode
from simulators.ground_truth import GroundTruth

__all__ = ["Detection", "KindScore", "ScoreReport", "score"]

DEFAULT_GRACE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Detection:
    """A detector's or rule's claim that ``sensor_id`` has ``problem`` at ``time`` (aware UTC)."""

    sensor_id: str
    problem: str
    time: datetime

    @classmethod
    def coerce(cls, obj: Any) -> Detection:
        """From a ``Detection``, a ``(sensor_id, problem, time)`` tuple or a dict with those keys
        (``kind`` is accepted for ``problem``); ``time`` may be an ISO 8601 string."""
        if isinstance(obj, Detection):
            return obj
        if isinstance(obj, Mapping):
            sensor_id, problem, time = obj["sensor_id"], obj.get("problem", obj.get("kind")), obj["time"]
        else:
            sensor_id, problem, time = obj
        if isinstance(time, str):
            time = datetime.fromisoformat(time.replace("Z", "+00:00"))
        if not isinstance(time, datetime) or time.tzinfo is None:
            raise ConfigError(
                f"detection time must be an aware datetime or ISO string with a zone, got {time!r}"
            )
        return cls(str(sensor_id), str(problem), time.astimezone(UTC))


@dataclass(slots=True)
class KindScore:
    """The score of one fault kind (see the module docstring for the definitions)."""

    kind: str
    episodes: int = 0
    detected: int = 0
    detections: int = 0
    true_positives: int = 0
    false_positives: int = 0
    ttd_s: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.detected / self.episodes if self.episodes else None

    @property
    def precision(self) -> float | None:
        judged = self.true_positives + self.false_positives
        return self.true_positives / judged if judged else None

    @property
    def median_ttd_s(self) -> float | None:
        return statistics.median(self.ttd_s) if self.ttd_s else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "episodes": self.episodes,
            "detected": self.detected,
            "recall": self.recall,
            "detections": self.detections,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "precision": self.precision,
            "median_ttd_s": self.median_ttd_s,
        }


@dataclass(slots=True)
class ScoreReport:
    """Scores per fault kind, plus the detections whose problem maps to no fault kind."""

    by_kind: dict[str, KindScore]
    unmapped: list[Detection]
    grace_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "grace_s": self.grace_s,
            "kinds": {k: s.to_json() for k, s in self.by_kind.items()},
            "unmapped_detections": len(self.unmapped),
        }


def _kinds_of(problem: str, mapping: Mapping[str, str | Iterable[str]] | None) -> frozenset[str]:
    if mapping is None:
        return frozenset({problem})
    target = mapping.get(problem)
    if target is None:
        return frozenset()
    return frozenset({target}) if isinstance(target, str) else frozenset(target)


def score(
    episodes: GroundTruth | Iterable[Episode],
    detections: Iterable[Any],
    *,
    mapping: Mapping[str, str | Iterable[str]] | None = None,
    grace: timedelta = DEFAULT_GRACE,
) -> ScoreReport:
    """Score ``detections`` against ``episodes`` by the module's matching rule.

    ``mapping`` sends each detection problem to one fault kind or several; without it, problem
    names are fault kind names. Every fault kind present in the episodes or the mapping gets a
    row, even with no detections.
    """
    eps = list(episodes.episodes if isinstance(episodes, GroundTruth) else episodes)
    grace_ms = int(grace.total_seconds() * 1000)
    by_sensor: dict[str, list[Episode]] = {}
    for e in eps:
        for sensor in e.sensors:
            by_sensor.setdefault(sensor, []).append(e)
    kinds = {e.kind for e in eps}
    if mapping is not None:
        for target in mapping.values():
            kinds |= {target} if isinstance(target, str) else set(target)
    report = {k: KindScore(k) for k in sorted(kinds)}
    for e in eps:
        report[e.kind].episodes += 1
    first: dict[str, int] = {}  # episode id → earliest matching detection (ms)
    unmapped: list[Detection] = []
    for raw in detections:
        d = Detection.coerce(raw)
        targets = _kinds_of(d.problem, mapping)
        if not targets:
            unmapped.append(d)
            continue
        for k in targets:
            report.setdefault(k, KindScore(k)).detections += 1
        t = round(d.time.timestamp() * 1000)
        matched: set[str] = set()
        for e in by_sensor.get(d.sensor_id, ()):
            if e.kind in targets and e.start_ms <= t <= e.end_ms + grace_ms:
                matched.add(e.kind)
                if e.id not in first or t < first[e.id]:
                    first[e.id] = t
        for k in targets:
            if k in matched:
                report[k].true_positives += 1
            elif not matched:
                report[k].false_positives += 1
    for e in eps:
        if e.id in first:
            s = report[e.kind]
            s.detected += 1
            s.ttd_s.append(max(first[e.id] - e.start_ms, 0) / 1000)
    return ScoreReport(by_kind=report, unmapped=unmapped, grace_s=grace.total_seconds())
