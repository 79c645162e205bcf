"""The ground-truth file: one episode per line, a summary last, read back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from simulators import read_ground_truth
from simulators.faults import FAULT_KINDS
from simulators.ground_truth import FORMAT
from tests.simulators.simhelp import Run


def test_write_and_read_back(faulty_run: Run, tmp_path: Path) -> None:
    path = faulty_run.truth.write(tmp_path / "truth.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == len(faulty_run.truth.episodes) + 1
    summary = json.loads(lines[-1])["summary"]
    assert summary["format"] == FORMAT
    assert summary["episode_total"] == len(lines) - 1
    assert set(summary["episodes"]) == set(FAULT_KINDS)
    assert summary["sensors"] == {"bin": 80, "light": 80, "parking": 24, "air": 16}
    assert summary["start"].endswith("Z") and summary["step_s"] == 300.0
    assert summary["messages"]["reports"] == sum(1 for m in faulty_run.messages if not m.duplicate)
    assert summary["messages"]["duplicate"] == sum(1 for m in faulty_run.messages if m.duplicate)
    back = read_ground_truth(path)
    assert back.summary == summary
    assert [e.to_json() for e in back.episodes] == [e.to_json() for e in faulty_run.truth.episodes]


def test_episode_lines(faulty_run: Run) -> None:
    for line in faulty_run.truth.to_jsonl().decode().splitlines()[:-1]:
        obj = json.loads(line)
        assert {"id", "kind", "category", "sensors", "start", "end", "params"} <= set(obj)
        assert obj["start"] < obj["end"]
        if obj["category"] == "transport" or obj["kind"] == "spikes":
            assert obj["count"] == len(obj["messages"]) > 0
        else:
            assert "messages" not in obj


def test_episodes_are_in_start_order(faulty_run: Run) -> None:
    starts = [e.start_ms for e in faulty_run.truth.episodes]
    assert starts == sorted(starts)
