"""A storm of duplicate detections from two processes at once still files one ticket per fault.

Two evaluator processes, each with its own connection, report the same dark street (12 lamps) and
a lamp on the next street over, round after round, in different orders. The partial unique index
turns the race for each incident into an update and the per-problem lock makes the grouping
decision once: one ticket for the street, one for the other lamp.
"""

from __future__ import annotations

import multiprocessing
import random
from datetime import datetime, timedelta
from multiprocessing.connection import Connection, wait
from typing import Any

import psycopg
import pytest

from sense311.db import connect
from sense311.settings import Settings
from tests.ticketing.conftest import Open311Server, det, insert_detections, make_settings, now_utc
from ticketing.incidents import apply_detection, consume_detections
from ticketing.outbox import OutboxWorker
from ticketing.settings import TicketingSettings
from ticketing.sinks import Sink

ROUNDS = 40
SENSORS = [f"lamp-{i:03d}" for i in range(1, 13)] + ["lamp-south"]
#: Seconds a storm process waits for the start signal or to finish before the test fails.
PROCESS_TIMEOUT = 120


def storm(
    database_url: str,
    schema: str,
    settings_json: str,
    seed: int,
    mode: str,
    t0: datetime,
    ready: Connection,
    go: Any,
) -> None:
    """One evaluator process: ROUNDS rounds of detections for every sensor, in its own order."""
    settings = make_settings(database_url, schema)
    ts = TicketingSettings.model_validate_json(settings_json)
    rng = random.Random(seed)
    with connect(settings, f"storm-{seed}", autocommit=True) as conn:
        ready.send("ready")
        if not go.wait(PROCESS_TIMEOUT):
            raise SystemExit(3)
        for n in range(ROUNDS):
            order = SENSORS[:]
            rng.shuffle(order)
            at = t0 + timedelta(minutes=n)
            detections = [det(s, at, rule_id=f"lamp_dark_{seed}") for s in order]
            if mode == "direct":
                for d in detections:
                    apply_detection(conn, d, ts, at)
            else:
                insert_detections(conn, detections)
                consume_detections(conn, ts, at, limit=7)
        if mode == "table":
            while consume_detections(conn, ts, t0 + timedelta(minutes=ROUNDS)).processed:
                pass


def run_storm(settings: Settings, ts: TicketingSettings, mode: str, t0: datetime) -> None:
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    pipes = [ctx.Pipe(duplex=False) for _ in (0, 1)]
    schema = settings.storage.db_schema
    url = settings.database_url.get_secret_value()
    procs = [
        ctx.Process(
            target=storm, args=(url, schema, ts.model_dump_json(), seed, mode, t0, pipes[seed][1], go)
        )
        for seed in (0, 1)
    ]
    for p in procs:
        p.start()
    for p, (reader, _) in zip(procs, pipes, strict=True):
        # Whichever comes first: the process says it is connected, or it died trying.
        woke = wait([reader, p.sentinel], PROCESS_TIMEOUT)
        assert reader in woke, f"storm process {p.name} exited with {p.exitcode} before starting"
        assert reader.recv() == "ready"
    go.set()
    for p in procs:
        p.join(PROCESS_TIMEOUT)
    assert [p.exitcode for p in procs] == [0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["direct", "table"])
def test_two_processes_storming_one_street_file_one_ticket(
    conn: psycopg.Connection[Any],
    settings: Settings,
    tsettings: TicketingSettings,
    sink: Sink,
    open311: Open311Server,
    mode: str,
) -> None:
    t0 = now_utc()
    run_storm(settings, tsettings, mode, t0)

    incidents = conn.execute(
        "SELECT count(*), sum(detections) FROM incidents WHERE status = 'open'"
    ).fetchone()
    assert incidents == (len(SENSORS), 2 * ROUNDS * len(SENSORS))
    tickets = conn.execute(
        "SELECT t.id, count(m.incident_id) FROM tickets t JOIN ticket_members m ON m.ticket_id = t.id "
        "GROUP BY t.id ORDER BY count(m.incident_id) DESC"
    ).fetchall()
    assert [members for _, members in tickets] == [12, 1]
    assert conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone() == (2,)
    # Tickets started at both ends of the street were merged before anything was sent.
    merged = conn.execute(
        "SELECT count(*) FILTER (WHERE t.status = 'merged'), count(*)"
        " FROM outbox o JOIN tickets t ON t.id = o.ticket_id"
        " WHERE o.state = 'cancelled'"
    ).fetchone()
    assert merged is not None and merged[0] == merged[1]

    assert OutboxWorker(conn, tsettings, {"open311": sink}).drain(t0).sent == 2
    requests = open311.requests()
    assert len(requests) == 2
    assert sorted(r["attributes"]["lamps"] for r in requests) == ["1", "12"]
