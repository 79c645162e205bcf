"""run_simulation: options in, messages out, ground truth written, time paced, stops cleanly."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sense311.errors import ConfigError
from simulators import parse_options, read_ground_truth, run_simulation
from simulators.errors import PublishError, SimulatorError
from simulators.runner import RunReport

SMALL = {"bins": 6, "lights": 6, "parking": 4, "air": 4}


def test_output_none_writes_the_ground_truth_and_reports_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    report = run_simulation(
        parse_options(
            **SMALL,
            seed=2,
            start="2024-03-04T12:00Z",
            duration="12h",
            step="5m",
            faults="default",
            fault_rates={"lamp_out": 2.0, "malformed": 1.0},
            output="none",
            ground_truth=tmp_path / "truth.jsonl",
        ),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert isinstance(report, RunReport) and report.completed
    assert report.total_steps == report.steps == 144
    assert report.messages > 0 and report.sent == 0
    assert calls[-1] == (144, 144) and [c[0] for c in calls] == sorted(c[0] for c in calls)
    truth = read_ground_truth(tmp_path / "truth.jsonl")
    assert report.ground_truth == tmp_path / "truth.jsonl"
    assert len(truth.episodes) == report.episodes > 0
    assert truth.summary["completed"] is True
    assert truth.summary["options"]["fault_rates"] == {"lamp_out": 2.0, "malformed": 1.0}
    assert truth.summary["start"] == "2024-03-04T12:00:00.000Z"


def test_output_file_holds_every_payload(tmp_path: Path) -> None:
    out = tmp_path / "messages.jsonl"
    report = run_simulation(
        {
            **SMALL,
            **{
                "start": "2024-03-04",
                "duration": "2h",
                "format": "ttn_v3",
                "output": "file",
                "out_file": out,
            },
            **{"faults": "default", "fault_rates": {"malformed": 20.0}},
        },
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == report.sent == report.messages
    assert all(line["topic"].startswith("v3/") for line in lines)
    broken = 0
    for line in lines:
        raw = line["payload"].encode() if "payload" in line else base64.b64decode(line["payload_b64"])
        try:
            json.loads(raw)
        except ValueError:
            broken += 1
    assert broken > 0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_time_warp_paces_the_messages() -> None:
    clock = FakeClock(1_000_000.0)
    seen: list[float] = []
    report = run_simulation(
        {**SMALL, "start": "2024-03-04", "duration": "1h", "step": "5m", "speed": 600, "output": "none"},
        progress=lambda done, total: seen.append(clock.now),
        clock=clock,
        sleep=clock.sleep,
    )
    # One simulated hour at 600× is six seconds of (fake) wall clock, give or take the last step.
    assert 5.0 <= clock.slept <= 6.0
    assert report.completed and seen == sorted(seen)


def test_real_time_starts_now_rounded_to_the_step(tmp_path: Path) -> None:
    clock = FakeClock(1_709_553_731.7)  # 2024-03-04T12:02:11.7Z
    report = run_simulation(
        {
            **SMALL,
            "duration": "10m",
            "step": "1m",
            "speed": 1,
            "output": "none",
            "ground_truth": tmp_path / "t.jsonl",
        },
        clock=clock,
        sleep=clock.sleep,
    )
    assert report.completed
    assert read_ground_truth(tmp_path / "t.jsonl").summary["start"] == "2024-03-04T12:02:00.000Z"
    # Real time: the last report of the ten minutes goes out within the tenth minute.
    assert 540 <= clock.slept <= 600


def test_a_stopped_run_still_writes_what_happened(tmp_path: Path) -> None:
    def stop(done: int, total: int) -> None:
        if done == 50:
            raise KeyboardInterrupt

    path = tmp_path / "truth.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_simulation(
            {
                **SMALL,
                **{
                    "start": "2024-03-04",
                    "duration": "1d",
                    "step": "5m",
                    "output": "none",
                    "ground_truth": path,
                },
                **{"faults": "default", "fault_rates": {"dropout": 2.0}},
            },
            progress=stop,
        )
    truth = read_ground_truth(path)
    assert truth.summary["completed"] is False
    assert truth.summary["stopped_at"] == "2024-03-04T04:10:00.000Z"
    stopped = datetime(2024, 3, 4, 4, 10, tzinfo=UTC)
    assert truth.episodes and all(e.start < stopped and e.end <= stopped for e in truth.episodes)


def test_bad_options_fail_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--speed must be > 0, got -1"):
        run_simulation({"speed": -1, "output": "none"})
    with pytest.raises(ConfigError, match="unknown time zone 'Nowhere/City'"):
        run_simulation({"tz": "Nowhere/City", "output": "none", "ground_truth": tmp_path / "t.jsonl"})
    assert not (tmp_path / "t.jsonl").exists()


def test_as_fast_as_possible_without_a_start_fills_the_recent_past(tmp_path: Path) -> None:
    clock = FakeClock(1_709_553_731.7)  # 2024-03-04T12:02:11.7Z
    path = tmp_path / "t.jsonl"
    run_simulation(
        {**SMALL, "duration": "2h", "output": "none", "ground_truth": path}, clock=clock, sleep=clock.sleep
    )
    summary = read_ground_truth(path).summary
    assert (summary["start"], summary["end"]) == ("2024-03-04T10:02:00.000Z", "2024-03-04T12:02:00.000Z")
    assert clock.slept == 0


def test_an_unwritable_ground_truth_is_a_simulator_error(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match="could not write the ground truth to"):
        run_simulation(
            {**SMALL, "duration": "10m", "output": "none", "ground_truth": tmp_path / "missing" / "t.jsonl"}
        )


def test_a_format_without_time_gets_a_note_when_not_real_time(tmp_path: Path) -> None:
    options = {
        **SMALL,
        "start": "2024-03-04",
        "duration": "10m",
        "output": "file",
        "out_file": tmp_path / "m",
    }
    assert run_simulation({**options, "format": "zigbee2mqtt"}).notes
    assert not run_simulation({**options, "format": "senml"}).notes


def test_a_run_that_cannot_start_writes_an_empty_ground_truth(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with pytest.raises(PublishError, match=r"could not connect to mqtt://127\.0\.0\.1:1"):
        run_simulation(
            {
                **SMALL,
                "start": "2024-03-04",
                "faults": "default",
                "mqtt_url": "mqtt://127.0.0.1:1",
                "ground_truth": path,
            }
        )
    truth = read_ground_truth(path)
    assert truth.episodes == [] and truth.summary["completed"] is False
    assert truth.summary["stopped_at"] == "2024-03-04T00:00:00.000Z"
