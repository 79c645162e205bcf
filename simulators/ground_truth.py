"""The ground-truth file: every labelled fault episode of a run, then a summary.

JSON Lines, UTF-8, one object per line, written in episode start order::

    {"id": "ep-00001", "kind": "lamp_out", "category": "device", "sensors": ["70b3d5…"],
     "start": "2024-03-01T17:41:07.512Z", "end": "2024-03-03T11:02:45.100Z", "params": {}}
    {"id": "ep-00002", "kind": "duplicate", "category": "transport", "sensors": ["24e124…"],
     "start": "…", "end": "…", "params": {"probability": 0.5}, "count": 7,
     "messages": ["24e124…:513", …]}
    …
    {"summary": {"format": "sense311-ground-truth/1", "seed": 7, "start": "…", "end": "…",
                 "step_s": 60.0, "sensors": {"bin": 80, …}, "episodes": {"lamp_out": 4, …}, …}}

Times are ISO 8601 UTC with milliseconds; ``end`` is exclusive. ``messages`` (transport faults
and ``spikes``) lists the affected message ids ``"<sensor id>:<frame counter>"``, ``count``
their number. The last line is always ``{"summary": …}``: counts of episodes per kind, of
sensors per kind, of messages (``reports`` taken, and how many were ``duplicate``d,
``malformed``, delivered ``out_of_order`` or ``clock_skew``ed), the period, the seed, the fault
rates, ``completed`` (false with ``stopped_at`` when a run stopped early) and the run options.
The file holds no wall-clock time, so the same seed and options give the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sense311.errors import ConfigError
from simulators.faults import Episode

__all__ = ["FORMAT", "GroundTruth", "read_ground_truth"]

FORMAT = "sense311-ground-truth/1"


@dataclass(slots=True)
class GroundTruth:
    """Episodes and summary of one run."""

    episodes: list[Episode]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_jsonl(self) -> bytes:
        lines = [json.dumps(e.to_json(), separators=(",", ":")) for e in self.episodes]
        lines.append(json.dumps({"summary": self.summary}, separators=(",", ":")))
        return ("\n".join(lines) + "\n").encode()

    def write(self, path: str | Path) -> Path:
        """Write the file (replacing it atomically, so a reader never sees half of it)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(self.to_jsonl())
        tmp.replace(target)
        return target

    def by_kind(self, kind: str) -> list[Episode]:
        return [e for e in self.episodes if e.kind == kind]


def read_ground_truth(path: str | Path) -> GroundTruth:
    """Read a ground-truth file written by ``GroundTruth.write``."""
    episodes: list[Episode] = []
    summary: dict[str, Any] = {}
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if "summary" in obj:
                    summary = obj["summary"]
                else:
                    episodes.append(Episode.from_json(obj))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{number}: not a ground-truth episode: {exc}") from exc
    return GroundTruth(episodes, summary)
