"""An in-memory view of the device registry, as ingest needs it.

Validation runs per reading, so it must not query the database per message: the whole
registry is loaded at start (100,000 sensors take a few MB), misses are looked up once per
batch, and everything is refreshed periodically so re-bound gateways and new bin depths
reach a running worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["REFRESH_SECONDS", "Registry", "SensorInfo"]

#: How stale a worker's view of the registry may get (seconds).
REFRESH_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class SensorInfo:
    id: str
    kind: str
    gateway: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


_SELECT = "SELECT id, kind, gateway, metadata FROM sensors"


class Registry:
    def __init__(self, alias_keys: Iterable[str] = ()) -> None:
        self._sensors: dict[str, SensorInfo] = {}
        self._loaded_at = float("-inf")
        #: metadata key → {alias: sensor id}, for routes whose devices go by another name.
        self._aliases: dict[str, dict[str, str]] = {key: {} for key in alias_keys}

    def alias(self, key: str, name: str) -> str | None:
        return self._aliases.get(key, {}).get(name)

    def _index_aliases(self, info: SensorInfo) -> None:
        for key, table in self._aliases.items():
            name = info.metadata.get(key)
            if isinstance(name, str):
                table[name] = info.id

    def __len__(self) -> int:
        return len(self._sensors)

    def get(self, sensor_id: str) -> SensorInfo | None:
        return self._sensors.get(sensor_id)

    def add(self, info: SensorInfo) -> None:
        self._sensors[info.id] = info
        self._index_aliases(info)

    def stale(self, now: float | None = None) -> bool:
        return ((now if now is not None else time.monotonic()) - self._loaded_at) >= REFRESH_SECONDS

    def load_all(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(_SELECT).fetchall()
        self._sensors = {r[0]: SensorInfo(r[0], r[1], r[2], r[3] or {}) for r in rows}
        self._aliases = {key: {} for key in self._aliases}
        for info in self._sensors.values():
            self._index_aliases(info)
        self._loaded_at = time.monotonic()

    def resolve(self, conn: psycopg.Connection, ids: Iterable[str]) -> None:
        """Look up ids this view does not know yet (one query)."""
        missing = [i for i in set(ids) if i not in self._sensors]
        if not missing:
            return
        for r in conn.execute(_SELECT + " WHERE id = ANY(%s)", (missing,)).fetchall():
            self.add(SensorInfo(r[0], r[1], r[2], r[3] or {}))

    def resolve_aliases(self, conn: psycopg.Connection, key: str, names: Iterable[str]) -> None:
        """Look up aliases (``metadata->>key``) this view does not know yet (one query)."""
        table = self._aliases.setdefault(key, {})
        missing = [n for n in set(names) if n not in table]
        if not missing:
            return
        query = _SELECT + " WHERE metadata->>%s = ANY(%s)"
        for r in conn.execute(query, (key, missing)).fetchall():
            self.add(SensorInfo(r[0], r[1], r[2], r[3] or {}))
