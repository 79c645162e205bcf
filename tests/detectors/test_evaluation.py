"""Scores to detections (the rule-like decision) and the evaluation on a small simulated city."""

from __future__ import annotations

import numpy as np

from detectors import DetectorSettings, evaluate
from detectors.decide import firing_instants


def test_firing_needs_for_and_clears_with_hysteresis() -> None:
    instants = np.arange(10) * 60.0
    values = np.array([[0.0, 0.95, 0.95, 0.95, 0.6, 0.95, 0.2, 0.95, 0.95, 0.0]])
    # for 2 minutes: pending at 60, firing at 180; 0.6 does not clear (clear below 0.45); 0.2 does.
    assert firing_instants(values, instants, 0.9, 120.0, 0.45) == [(0, 180.0)]
    assert firing_instants(values, instants, 0.9, 0.0, 0.45) == [(0, 60.0), (0, 420.0)]
    assert firing_instants(np.full((1, 10), np.nan), instants, 0.9, 0.0, 0.45) == []


def test_evaluate_finds_spikes_on_a_small_city() -> None:
    job = DetectorSettings().job("spikes")
    report = evaluate([job], days=1, train_days=1, counts={"bin": 30, "light": 0, "parking": 0, "air": 10})
    (result,) = report.jobs
    spikes = next(k for k in result.kinds if k.kind == "spikes")
    assert spikes.episodes >= 1 and spikes.recall == 1.0 and (spikes.precision or 0) > 0.9
    assert result.clean_detections == 0
    assert report.clean_sensor_days == 40
