"""Ticketing figures: tickets filed per second through the outbox, and how far detections reduce.

    python bench/tickets.py throughput [--tickets 400 --workers 1,4]
    python bench/tickets.py day        [--seed 7]           # simulator + rule pack, one day
    python bench/tickets.py day --synthetic                 # a hand-made day, no simulator needed

Uses SENSE311_TEST_DATABASE_URL (default: the local PostgreSQL) and schemas of its own
(``bench_tickets_<figure>`` and ``…_o311`` for the Open311 server), dropped first and afterwards.
The Open311 server is sense311's own, on 127.0.0.1 in a thread, with its faults off.

``throughput``: N incidents far apart (one ticket each) are filed, then W outbox workers (threads,
one connection and one HTTP client each) drain the outbox against the server; the figure is
tickets per second from the first claim to the last recorded result, each one a validated,
form-encoded POST plus its bookkeeping. Our own rate limits are off: a real city allows ~10/min.

``day``: the simulator's default fleet (seed 7) with its default fault rates runs for a day, is
stored as ingest would store it, and the built-in rule pack is backtested over it (the same state
machine as live evaluation). Its detections are then replayed hour by hour through the detections
table, the consumer, the outbox and the server. The figure is detections per ticket filed. With
``--synthetic`` (or when the simulator or the rules cannot be imported) the day is made here
instead: a circuit of 12 lamps on one street dark at 22:00 and detected by two evaluators, five
single lamps out, a flickering lamp, and 30 bins overflowing one to three times.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from sense311.db import connect, ensure_partitions, migrate
from sense311.settings import Settings, load_settings
from sense311.types import Detection
from ticketing.open311 import store
from ticketing.open311.server import ServerThread, create_app
from ticketing.pipeline import run_cycle
from ticketing.settings import TicketingSettings
from ticketing.sinks import create_sink
from ticketing.sinks.open311 import Open311Sink

DB = os.environ.get("SENSE311_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: Backfilling a simulated day takes longer than the default one-minute statement timeout.
STATEMENT_TIMEOUT_S = 3600
START = datetime(2026, 3, 2, tzinfo=UTC)
#: Rate limits high enough never to bind: the figure is what the outbox and server can do.
UNLIMITED = {"default": {"per_minute": 10_000_000, "burst": 100_000}}
#: Degrees between throughput-bench sensors (~1.1 km): each incident is a ticket of its own.
SOLO_SPACING = 0.01

#: The rule pack's problems as Open311 services of the server's demo catalogue.
SERVICES: dict[str, Any] = {
    **{
        problem: {
            "service_code": "streetlight",
            "title": title,
            "attributes": {"pole_id": "sensor.id", "fault": {"value": fault}, "lamps": "ticket.members"},
        }
        for problem, title, fault in (
            ("lamp_out", "Street light out", "out"),
            ("circuit_outage", "Street lights out (circuit)", "out"),
            ("day_burner", "Street light on by day", "day_burning"),
            ("flicker", "Street light flickers", "flicker"),
        )
    },
    "bin_overflow": {
        "service_code": "bin_overflow",
        "title": "Overflowing litter bin",
        "attributes": {"bin_id": "sensor.id"},
    },
    "sensor_silent": {"service_code": "sensor_fault", "title": "City sensor silent"},
    "battery_low": {"service_code": "sensor_fault", "title": "City sensor battery low"},
}


def fresh_schema(name: str) -> tuple[Settings, psycopg.Connection[Any]]:
    drop(name)
    settings = load_settings(
        database_url=DB, storage={"schema": name, "statement_timeout": STATEMENT_TIMEOUT_S}
    )
    conn = connect(settings, "bench-tickets", autocommit=True)
    migrate(conn, settings)
    return settings, conn


def drop(*schemas: str) -> None:
    with psycopg.connect(DB, autocommit=True) as admin:
        for name in schemas:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _serve(schema: str, pipe: Connection, stop: Any) -> None:
    with ServerThread(create_app(DB, schema)) as thread:
        pipe.send(thread.url)
        stop.wait()


class Server:
    """The Open311 server in a process of its own, so it does not share the bench's interpreter lock."""

    def __init__(self, schema: str) -> None:
        drop(schema)
        ctx = multiprocessing.get_context("spawn")
        reader, writer = ctx.Pipe(duplex=False)
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_serve, args=(schema, writer, self._stop), daemon=True)
        self._process.start()
        self.url: str = reader.recv()
        conninfo = psycopg.conninfo.make_conninfo(DB, options=f"-csearch_path={schema}")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            self.key = store.add_api_key(conn, "bench", datetime.now(UTC))

    def stop(self) -> None:
        self._stop.set()
        self._process.join()


def ticketing_for(url: str, key: str, **overrides: Any) -> TicketingSettings:
    os.environ["SENSE311_OPEN311_API_KEY"] = key
    values: dict[str, Any] = {
        "services": SERVICES,
        "open311": {"url": url, "rate_limits": UNLIMITED},
        **overrides,
    }
    return TicketingSettings(**values)


# -- throughput ---------------------------------------------------------------------------------------


def bench_throughput(count: int, workers: list[int]) -> None:
    from ticketing.incidents import apply_detection
    from ticketing.outbox import OutboxWorker

    for n in workers:
        schema, server_schema = "bench_tickets_tp", "bench_tickets_tp_o311"
        settings, conn = fresh_schema(schema)
        server = Server(server_schema)
        ts = ticketing_for(server.url, server.key, group_hold="0s")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sensors (id, kind, lat, lon, address) VALUES (%s, 'light', %s, %s, %s)",
                [(f"l{i:05d}", 52.0 + (i // 100) * SOLO_SPACING, 4.0 + (i % 100) * SOLO_SPACING, f"Lane {i}")
                 for i in range(count)],
            )  # fmt: skip
        now = datetime.now(UTC)
        began = time.perf_counter()
        for i in range(count):
            apply_detection(conn, Detection("bench", "1", f"l{i:05d}", "lamp_out", "detection", now), ts, now)
        opened = time.perf_counter() - began

        barrier = threading.Barrier(n + 1)
        sent: list[int] = []

        def work(
            ts: TicketingSettings,
            settings: Settings,
            barrier: threading.Barrier,
            sent: list[int],
            now: datetime,
        ) -> None:
            sink = Open311Sink(ts)
            # Discovery, the service list and the definition are fetched once per worker, before the clock.
            sink.client.service_definition("streetlight")
            with connect(settings, "bench-worker", autocommit=True) as c:
                barrier.wait()
                sent.append(OutboxWorker(c, ts, {"open311": sink}).drain(now).sent)
            sink.close()

        threads = [threading.Thread(target=work, args=(ts, settings, barrier, sent, now)) for _ in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
        requests = conn.execute(
            "SELECT count(*) FROM tickets WHERE service_request_id IS NOT NULL"
        ).fetchone()
        print(
            f"throughput: {sum(sent)} tickets filed by {n} worker{'s' if n > 1 else ''} in {seconds:.2f} s = "
            f"{sum(sent) / seconds:.0f} tickets/s ({requests[0] if requests else 0} request ids recorded; "
            f"{count} incidents opened in {opened:.2f} s = {count / opened:.0f}/s)"
        )
        conn.close()
        server.stop()
        drop(schema, server_schema)


# -- a day ----------------------------------------------------------------------------------------------


def simulated_day(conn: psycopg.Connection[Any], seed: int) -> tuple[list[Detection], str]:
    # Run as a script, bench/ comes first on sys.path, and its rules.py would shadow the rules
    # package: the repository's root takes its place.
    root = Path(__file__).resolve().parents[1]
    sys.path[:] = [str(root)] + [
        p for p in sys.path if Path(p or ".").resolve() not in (root, root / "bench")
    ]
    from rules import backtest, load_rules
    from simulators import Simulation, backfill, build_fleet, default_faults, register_fleet

    end = START + timedelta(days=1)
    fleet = build_fleet(seed=seed)
    simulation = Simulation(fleet, default_faults(), START, end, step=60)
    register_fleet(conn, fleet)
    ensure_partitions(conn, START - timedelta(days=1), end + timedelta(days=1), timedelta(days=7))
    began = time.perf_counter()
    report = backfill(conn, simulation)
    result = backtest(conn, load_rules("builtin:city"), START, end, spans=False)
    faults = Counter(e.kind for e in simulation.ground_truth().episodes)
    source = (
        f"simulator (default fleet of {len(fleet.ids)} sensors, seed {seed}, default fault rates: "
        f"{sum(faults.values())} fault episodes, {faults.get('circuit_outage', 0)} circuit outages), "
        f"{report.inserted:,} readings, rule pack builtin:city backtested "
        f"({time.perf_counter() - began:.0f} s to build)"
    )
    return result.detections, source


def synthetic_day(conn: psycopg.Connection[Any], seed: int) -> tuple[list[Detection], str]:
    rng = random.Random(seed)
    sensors: list[tuple[str, str, float, float, str]] = []
    for i in range(12):  # one street, one circuit, lamps 30 m apart
        sensors.append((f"lamp-linden-{i:02d}", "light", 52.37, 4.89 + i * 0.00044, f"Lindenstraat {i + 1}"))
    for i in range(40):  # lamps elsewhere, ~700 m apart
        sensors.append(
            (f"lamp-{i:02d}", "light", 52.30 + (i // 8) * 0.007, 4.80 + (i % 8) * 0.01, f"Weg {i}")
        )
    for i in range(30):
        sensors.append(
            (f"bin-{i:02d}", "bin", 52.40 + (i // 6) * 0.006, 4.95 + (i % 6) * 0.009, f"Plein {i}")
        )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, lat, lon, address) VALUES (%s, %s, %s, %s, %s)", sensors
        )

    out: list[Detection] = []

    def emit(sensor: str, problem: str, at: datetime, kind: str = "detection", rule: str = "r") -> None:
        out.append(Detection(rule, "1", sensor, problem, kind, at, at - timedelta(minutes=5)))

    dark = START + timedelta(hours=22)
    for evaluator in ("a", "b"):  # two evaluators report the circuit, each lamp a few minutes apart
        for i in range(12):
            emit(
                f"lamp-linden-{i:02d}",
                "lamp_out",
                dark + timedelta(minutes=rng.randint(0, 4)),
                rule=evaluator,
            )
    for i in rng.sample(range(40), 5):
        emit(
            f"lamp-{i:02d}",
            "lamp_out",
            START + timedelta(hours=rng.randint(18, 23), minutes=rng.randint(0, 59)),
        )
    flicker_at = START + timedelta(hours=19)
    for n in range(20):  # detect / resolve / detect: one incident, one ticket
        emit("lamp-07", "flicker", flicker_at + timedelta(minutes=12 * n))
        emit("lamp-07", "flicker", flicker_at + timedelta(minutes=12 * n + 6), "resolution")
    for i in range(30):
        for _ in range(rng.randint(1, 3)):
            at = START + timedelta(hours=rng.randint(7, 21), minutes=rng.randint(0, 59))
            emit(f"bin-{i:02d}", "bin_overflow", at)
            emit(f"bin-{i:02d}", "bin_overflow", at + timedelta(minutes=rng.randint(30, 120)), "resolution")
    out.sort(key=lambda d: (d.fired_at, d.kind))
    return out, (
        "synthetic day: 12 lamps of one circuit dark at 22:00 reported by two evaluators, 5 single lamps "
        "out, a lamp flickering 20 times, 30 bins overflowing 1-3 times (made here, not by the simulator)"
    )


def bench_day(seed: int, synthetic: bool) -> None:
    schema, server_schema = "bench_tickets_day", "bench_tickets_day_o311"
    _, conn = fresh_schema(schema)
    detections: list[Detection]
    if synthetic:
        detections, source = synthetic_day(conn, seed)
    else:
        try:
            detections, source = simulated_day(conn, seed)
        except ImportError as exc:
            print(f"day: the simulator or the rules cannot be used ({exc}); synthesising the day instead")
            detections, source = synthetic_day(conn, seed)
    server = Server(server_schema)
    ts = ticketing_for(server.url, server.key)
    sink = create_sink("open311", ts)
    began = time.perf_counter()
    hour = START
    by_hour: dict[datetime, list[Detection]] = {}
    for d in detections:
        by_hour.setdefault(d.fired_at.replace(minute=0, second=0, microsecond=0), []).append(d)
    totals = Counter[str]()
    while hour <= START + timedelta(days=1):
        batch = by_hour.get(hour, [])
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO detections (rule_id, rule_version, sensor_id, problem, kind, fired_at, onset,
                                           severity, value, evidence)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, '{}') ON CONFLICT DO NOTHING""",
                [(d.rule_id, d.rule_version, d.sensor_id, d.problem, d.kind, d.fired_at, d.onset, d.severity,
                  d.value) for d in batch],
            )  # fmt: skip
        # Run at the end of the hour: every ticket opened in it is past its grouping hold.
        result = run_cycle(conn, ts, {"open311": sink}, hour + timedelta(hours=1))
        totals.update(consumed=result.consumed, sent=result.sent, dead=result.dead)
        hour += timedelta(hours=1)
    seconds = time.perf_counter() - began
    sink.close()
    kinds = Counter(d.kind for d in detections)
    problems = Counter(d.problem for d in detections if d.kind == "detection")
    incidents = conn.execute("SELECT count(*) FROM incidents").fetchone()
    filed = conn.execute(
        "SELECT count(*) FROM tickets WHERE status NOT IN ('merged', 'cancelled', 'failed')"
    ).fetchone()
    merged = conn.execute("SELECT count(*) FROM tickets WHERE status = 'merged'").fetchone()
    largest = conn.execute(
        "SELECT t.problem, count(*) FROM ticket_members m JOIN tickets t ON t.id = m.ticket_id "
        "GROUP BY t.id, t.problem ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    with psycopg.connect(DB, autocommit=True) as c:
        server_requests = c.execute(
            sql.SQL("SELECT count(*) FROM {}.requests").format(sql.Identifier(server_schema))
        ).fetchone()
    assert incidents and filed and merged and server_requests
    print(f"day: {source}")
    print(
        f"  {kinds['detection']} detections + {kinds['resolution']} resolutions "
        f"({', '.join(f'{p} {n}' for p, n in problems.most_common())})"
    )
    print(
        f"  → {incidents[0]} incidents → {filed[0]} tickets filed "
        f"({server_requests[0]} requests on the server, "
        f"{merged[0]} tickets merged, {totals['dead']} dead-lettered; largest ticket: "
        f"{largest[1] if largest else 0} {largest[0] if largest else ''} incidents)"
    )
    ratio = kinds["detection"] / filed[0] if filed[0] else float("nan")
    print(f"  reduction: {ratio:.1f} detections per ticket; replayed in {seconds:.1f} s")
    conn.close()
    server.stop()
    drop(schema, server_schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    tp = sub.add_parser("throughput", help="tickets per second through the outbox")
    tp.add_argument("--tickets", type=int, default=400)
    tp.add_argument("--workers", default="1,4", help="comma-separated worker counts to measure")
    day = sub.add_parser("day", help="detections-to-tickets reduction over a simulated day")
    day.add_argument("--seed", type=int, default=7)
    day.add_argument("--synthetic", action="store_true", help="make the day here instead of simulating it")
    args = parser.parse_args()
    if args.figure == "throughput":
        bench_throughput(args.tickets, [int(w) for w in args.workers.split(",")])
    else:
        bench_day(args.seed, args.synthetic)


if __name__ == "__main__":
    main()
