"""Versioned detector models in ``detector_models`` (migration 0006).

Every training run of a job adds a row with the next version number: ``trained`` with the
pickled detector states, or ``failed`` with the error and no model. Saving a trained version
pins it (unless asked not to) in the same transaction that unpins the previous one, so scoring
always finds exactly one pinned version or none; a failed run never touches the pin.

Models are pickles of detector objects this package wrote itself: load them only from a
database you trust, as with any pickle.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from detectors.errors import DetectorError, NoModelError
from sense311.db.errors import translate

__all__ = ["ModelRow", "list_models", "load_pinned", "pin", "save_failed", "save_trained"]

#: Pickle protocol 5: out-of-band buffers make numpy arrays cheap to store.
PICKLE_PROTOCOL = 5


@dataclass(slots=True)
class ModelRow:
    """One version of one job's model (``model`` unpickled only by ``load_pinned``)."""

    name: str
    version: int
    kind: str
    params: dict[str, Any]
    trained_from: datetime | None
    trained_to: datetime | None
    metrics: dict[str, Any]
    status: str
    error: str | None
    pinned: bool
    created_at: datetime
    model: Any = None


_COLUMNS = "name, version, kind, params, trained_from, trained_to, metrics, status, error, pinned, created_at"


def _next_version(conn: psycopg.Connection, name: str) -> int:
    # Serialises concurrent training runs of one job: the advisory lock lives until commit.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('sense311.detector_models'), hashtext(%s))", (name,))
    row = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM detector_models WHERE name = %s", (name,))
    return int(row.fetchone()[0])


def save_trained(
    conn: psycopg.Connection,
    *,
    name: str,
    kind: str,
    params: dict[str, Any],
    trained_from: datetime,
    trained_to: datetime,
    metrics: dict[str, Any],
    model: Any,
    now: datetime,
    pin_it: bool = True,
) -> int:
    """Store a trained model as the next version (pinned unless ``pin_it`` is false)."""
    blob = pickle.dumps(model, protocol=PICKLE_PROTOCOL)
    try:
        with conn.transaction():
            version = _next_version(conn, name)
            if pin_it:
                conn.execute("UPDATE detector_models SET pinned = false WHERE name = %s AND pinned", (name,))
            conn.execute(
                f"INSERT INTO detector_models ({_COLUMNS}, model) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, 'trained', NULL, %s, %s, %s)",
                (
                    name,
                    version,
                    kind,
                    Jsonb(params),
                    trained_from,
                    trained_to,
                    Jsonb(metrics),
                    pin_it,
                    now,
                    blob,
                ),
            )
    except psycopg.Error as exc:
        raise translate(exc, f"cannot save the model of detector job {name!r}") from exc
    return version


def save_failed(
    conn: psycopg.Connection,
    *,
    name: str,
    kind: str,
    params: dict[str, Any],
    trained_from: datetime,
    trained_to: datetime,
    error: str,
    now: datetime,
) -> int:
    """Record a failed training run; the pinned version stays as it was."""
    try:
        with conn.transaction():
            version = _next_version(conn, name)
            conn.execute(
                f"INSERT INTO detector_models ({_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, '{}', 'failed', %s, false, %s)",
                (name, version, kind, Jsonb(params), trained_from, trained_to, error, now),
            )
    except psycopg.Error as exc:
        raise translate(exc, f"cannot record the failed training of detector job {name!r}") from exc
    return version


def list_models(conn: psycopg.Connection, name: str | None = None) -> list[ModelRow]:
    """Every version (without the model bytes), newest first."""
    where = "WHERE name = %s" if name else ""
    try:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM detector_models {where} ORDER BY name, version DESC",
            [name] if name else [],
        ).fetchall()
    except psycopg.Error as exc:
        raise translate(exc, "cannot list detector models") from exc
    return [ModelRow(*r) for r in rows]


def load_pinned(conn: psycopg.Connection, name: str) -> ModelRow:
    """The pinned version of ``name`` with its model unpickled; ``NoModelError`` when none."""
    try:
        row = conn.execute(
            f"SELECT {_COLUMNS}, model FROM detector_models WHERE name = %s AND pinned", (name,)
        ).fetchone()
    except psycopg.Error as exc:
        raise translate(exc, f"cannot load the model of detector job {name!r}") from exc
    if row is None:
        raise NoModelError(f"detector job {name!r} has no pinned model; run 'sense311 detectors train' first")
    out = ModelRow(*row[:-1])
    try:
        out.model = pickle.loads(row[-1])
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError) as exc:
        raise DetectorError(
            f"model {name!r} version {out.version} cannot be loaded ({exc}); "
            "retrain it or pin another version"
        ) from exc
    return out


def pin(conn: psycopg.Connection, name: str, version: int) -> None:
    """Pin ``version`` of ``name`` (it must be a trained one)."""
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT status FROM detector_models WHERE name = %s AND version = %s", (name, version)
            ).fetchone()
            if row is None:
                raise DetectorError(f"detector job {name!r} has no version {version}")
            if row[0] != "trained":
                raise DetectorError(
                    f"version {version} of detector job {name!r} failed to train; it cannot be pinned"
                )
            conn.execute("UPDATE detector_models SET pinned = false WHERE name = %s AND pinned", (name,))
            conn.execute(
                "UPDATE detector_models SET pinned = true WHERE name = %s AND version = %s", (name, version)
            )
    except psycopg.Error as exc:
        raise translate(exc, f"cannot pin version {version} of detector job {name!r}") from exc
