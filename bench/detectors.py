"""Detector throughput: training time and scoring speed for a large fleet, in memory.

    python bench/detectors.py                                   # 10,000 sensors × 30 days
    python bench/detectors.py --sensors 1000 --detectors seasonal,stuck

For each detector, every sensor gets a synthetic series (a daily cycle plus noise, one reading
every ``--step`` seconds): **training** feeds each sensor's detector its ``--days`` of history
(what ``sense311 detectors train`` does after reading the database), **scoring** then feeds one
more day and keeps each 5-minute instant's highest score (what ``sense311 detectors score``
does before writing). Figures are single-process CPU time, without the database: reading and
writing rows is measured by the ingest and rules benchmarks. Scoring throughput is in
sensor-instants per second (one sensor at one instant).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors import get_detector

#: The scoring job's default instant interval (s).
INTERVAL = 300.0
DAY = 86400.0
#: Parameters that suit a 10-minute cadence (the forest's warm-up is a day of readings).
PARAMS = {"forest": {"window": 12, "stride": 6, "grace_period": 144}, "peer": {"baseline": {"period": "day"}}}
PEERS = 4


def series(rng: np.random.Generator, t: np.ndarray, peers: bool) -> np.ndarray:
    base = 50 + 10 * np.sin(2 * np.pi * t / DAY + rng.uniform(0, 2 * np.pi))
    if peers:
        return np.round(base[:, None] + rng.normal(0, 1.0, (len(t), PEERS + 1)), 2)
    return np.round(base + rng.normal(0, 1.0, len(t)), 2)


def run(name: str, sensors: int, days: float, step: float) -> tuple[float, float, int]:
    rng = np.random.default_rng(7)
    t_train = np.arange(0, days * DAY, step)
    t_score = np.arange(days * DAY, (days + 1) * DAY, step)
    instants = np.arange(days * DAY + INTERVAL, (days + 1) * DAY + 1e-9, INTERVAL)
    template = get_detector(name, **PARAMS.get(name, {}))
    train_s = score_s = 0.0
    for _ in range(sensors):
        detector = template.clone()
        peers = detector.inputs == "peers"
        history = series(rng, np.concatenate([t_train, t_score]), peers)
        began = time.process_time()
        detector.score_series(t_train, history[: len(t_train)])
        middle = time.process_time()
        scored = detector.score_series(t_score, history[len(t_train) :])
        best = np.zeros(len(instants))
        col = np.ceil((t_score - instants[0]) / INTERVAL).astype(np.int64)
        np.maximum.at(best, np.clip(col, 0, len(instants) - 1), scored.score)
        ended = time.process_time()
        train_s += middle - began
        score_s += ended - middle
    return train_s, score_s, sensors * len(instants)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--step", type=float, default=600.0, help="seconds between readings")
    parser.add_argument(
        "--detectors", default="seasonal,stuck,spike,level_shift,rise_rate,silent,peer,peer_dark,forest"
    )
    args = parser.parse_args()
    readings = int(args.days * DAY / args.step)
    print(
        f"{args.sensors} sensors × {args.days:g} days, "
        f"one reading every {args.step:g} s ({readings} per sensor)"
    )
    print(f"{'detector':<12} {'training (s)':>13} {'µs/reading':>11} {'scoring sensor-instants/s':>26}")
    for name in args.detectors.split(","):
        train_s, score_s, sensor_instants = run(name.strip(), args.sensors, args.days, args.step)
        per_reading = 1e6 * train_s / (args.sensors * readings)
        print(f"{name:<12} {train_s:>13.1f} {per_reading:>11.2f} {sensor_instants / score_s:>26,.0f}")


if __name__ == "__main__":
    main()
