"""End-to-end ingest throughput against three baselines measured in the same run.

    python bench/ingest.py [--messages 100000] [--workers 1 2] [--naive-messages 20000]

Uses SENSE311_TEST_DATABASE_URL (default: the local PostgreSQL) and a private Mosquitto started
with deploy/mosquitto.conf on a free port (``--mqtt-url`` names another broker). The private
broker matters: with Mosquitto's defaults (max_queued_messages 1000) a subscriber that falls
behind a fast publisher silently loses QoS 1 messages, and the bare-subscriber ceiling would be
measured on a broker that drops.

Each message is a typical bin uplink of 4 readings, published at QoS 1 as fast as one paho
publisher can. Figures:

* pipeline (1 and N workers): ``sense311 ingest`` with ack-after-commit, from the first
  publish to the moment the last reading is committed;
* (a) bare subscriber: a QoS 1 paho subscriber that only counts — the broker ceiling;
* (b) COPY: the same rows COPYed straight into the table, idempotently — the database ceiling;
* (c) naive: a subscriber that INSERTs each message's rows as it arrives (one transaction each).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from psycopg import sql

DB = os.environ.get("SENSE311_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
MQTT = ""  # set in main()
SENSORS = 1000
READINGS_PER_MESSAGE = 4


def _host_port() -> tuple[str, int]:
    rest = MQTT.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    return host, int(port)


def payload(i: int, base: float) -> bytes:
    sid = f"bench-{i % SENSORS:05d}"
    return json.dumps(
        {
            "sensor_id": sid,
            "ts": round(base + i * 0.001, 3),
            "metrics": {"fill_level": (i % 97) / 100, "battery": 90.5, "temperature": 11.25, "tilt": 2.0},
        },
        separators=(",", ":"),
    ).encode()


#: Messages a publisher keeps unacknowledged; the publisher waits for PUBACKs past this.
PUBLISH_WINDOW = 500


def publish(topic: str, n: int, base: float) -> float:
    """Publish n messages at QoS 1; returns seconds until every PUBACK arrived."""
    host, port = _host_port()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    window = threading.BoundedSemaphore(PUBLISH_WINDOW)
    client.on_publish = lambda *args: window.release()
    # Unlimited in paho (the semaphore bounds it): with a limit, paho re-scans every outstanding
    # message on each PUBACK.
    client.max_inflight_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    bodies = [payload(i, base) for i in range(n)]
    t0 = time.perf_counter()
    for body in bodies:
        window.acquire()
        client.publish(topic, body, qos=1)
    for _ in range(PUBLISH_WINDOW):
        window.acquire()
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return elapsed


def publish_raw(topic: str, body: bytes) -> None:
    host, port = _host_port()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    client.publish(topic, body, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def _publisher_proc(url: str, topic: str, n: int, base: float, out: mp.Queue) -> None:
    global MQTT
    MQTT = url  # a spawned process starts from a fresh module
    out.put(publish(topic, n, base))


def start_publisher(topic: str, n: int, base: float) -> tuple[mp.Process, mp.Queue, float]:
    q: mp.Queue = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_publisher_proc, args=(MQTT, topic, n, base, q))
    t0 = time.perf_counter()
    p.start()
    return p, q, t0


# -- baselines ----------------------------------------------------------------------------------


def _timed_subscriber(name: str, n: int, handle: Callable[[bytes], None], base: float) -> float:
    """Subscribe, publish n messages from another process, return seconds until ``handle`` saw n."""
    host, port = _host_port()
    topic = f"bench/{uuid.uuid4().hex[:8]}/{name}"
    done = threading.Event()
    count = 0

    def on_message(client, userdata, msg):
        nonlocal count
        handle(msg.payload)
        count += 1
        if count >= n:
            done.set()

    sub = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-{name}-{uuid.uuid4().hex[:6]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(host, port)
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    subscribed.wait(10)
    p, _q, t0 = start_publisher(topic, n, base)
    if not done.wait(900):
        raise SystemExit(f"{name} subscriber got {count}/{n} messages")
    elapsed = time.perf_counter() - t0
    p.join()
    sub.disconnect()
    sub.loop_stop()
    return elapsed


def bare_subscriber(n: int) -> float:
    return _timed_subscriber("bare", n, lambda payload: None, time.time())


def copy_baseline(conn: psycopg.Connection, n: int) -> float:
    base = time.time() - 3600
    rows = []
    for i in range(n):
        t = datetime.fromtimestamp(base + i * 0.001, UTC)
        sid = f"bench-{i % SENSORS:05d}"
        now = datetime.now(UTC)
        rows += [
            (t, sid, "fill_level", (i % 97) / 100, now),
            (t, sid, "battery", 90.5, now),
            (t, sid, "temperature", 11.25, now),
            (t, sid, "tilt", 2.0, now),
        ]
    conn.execute("""CREATE TEMP TABLE IF NOT EXISTS stage (time timestamptz, sensor_id text, metric text,
                    value double precision, received_at timestamptz) ON COMMIT DELETE ROWS""")
    conn.commit()
    t0 = time.perf_counter()
    for start in range(0, len(rows), 20000):
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy("COPY stage FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["timestamptz", "text", "text", "float8", "timestamptz"])
                for r in rows[start : start + 20000]:
                    copy.write_row(r)
            cur.execute("INSERT INTO readings SELECT * FROM stage ON CONFLICT DO NOTHING")
    return time.perf_counter() - t0


def naive_subscriber(schema: str, n: int) -> float:
    conn = psycopg.connect(DB, autocommit=True, options=f"-c search_path={schema},public")

    def insert(payload: bytes) -> None:
        doc = json.loads(payload)
        t = datetime.fromtimestamp(doc["ts"], UTC)
        with conn.transaction():
            for metric, value in doc["metrics"].items():
                conn.execute(
                    "INSERT INTO readings (time, sensor_id, metric, value) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (t, doc["sensor_id"], "n_" + metric, float(value)),
                )

    try:
        return _timed_subscriber("naive", n, insert, time.time() - 7200)
    finally:
        conn.close()


# -- the pipeline -------------------------------------------------------------------------------


def pipeline(schema: str, n: int, workers: int, workdir: Path) -> float:
    run = uuid.uuid4().hex[:8]
    config = workdir / f"bench-{run}.yaml"
    config.write_text(
        json.dumps(
            {
                "storage": {"schema": schema},
                "metrics_port": 0,
                "log_level": "WARNING",
                "mqtt": {"client_id": f"bench-ingest-{run}"},
                "ingest": {
                    "routes": [{"pattern": f"bench/{run}/gateways/{{gateway}}/json", "decoder": "json"}]
                },
            }
        )
    )
    env = {**os.environ, "SENSE311_DATABASE_URL": DB, "SENSE311_MQTT_URL": MQTT}
    conn = psycopg.connect(DB, autocommit=True, options=f"-c search_path={schema},public")
    before = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sense311.cli", "--config", str(config), "ingest", "--workers", str(workers)],
        env=env,
    )
    try:
        # Wait until the persistent sessions are subscribed: their client ids appear as connected.
        deadline = time.monotonic() + 60
        probe_topic = f"bench/{run}/gateways/probe/json"
        while time.monotonic() < deadline:
            publish_raw(probe_topic, b"probe: not JSON")
            time.sleep(0.5)
            if conn.execute("SELECT count(*) FROM dead_letters WHERE topic = %s", (probe_topic,)).fetchone()[
                0
            ]:
                break
        else:
            raise SystemExit("ingest did not start within 60 s")
        target = before + n * READINGS_PER_MESSAGE
        p, _q, t0 = start_publisher(f"bench/{run}/gateways/gw1/json", n, time.time() - 1800 - workers * 600)
        while True:
            count = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            if count >= target:
                break
            if proc.poll() is not None:
                raise SystemExit(f"ingest exited with {proc.returncode}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        p.join()
        return elapsed
    finally:
        proc.terminate()
        proc.wait(60)
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--naive-messages", type=int, default=20_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--mqtt-url", default=None, help="use this broker instead of a private Mosquitto")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as brokerdir:
        broker = None
        global MQTT
        if args.mqtt_url:
            MQTT = args.mqtt_url
        else:
            from sense311.embedded import start_mqtt_broker

            broker = start_mqtt_broker(Path(brokerdir))
            MQTT = broker.url
        try:
            run(args)
        finally:
            if broker is not None:
                broker.stop()


def run(args: argparse.Namespace) -> None:
    n = args.messages
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(DB, autocommit=True)
    env = {**os.environ, "SENSE311_DATABASE_URL": DB, "SENSE311_STORAGE__SCHEMA": schema}
    subprocess.run(
        [sys.executable, "-m", "sense311.cli", "db", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    conn = psycopg.connect(DB, autocommit=True, options=f"-c search_path={schema},public")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, metadata) VALUES (%s, 'bin', '{\"depth_mm\": 1200}')",
            [(f"bench-{i:05d}",) for i in range(SENSORS)],
        )
    results: dict[str, tuple[int, float]] = {}
    try:
        print(f"messages: {n} x {READINGS_PER_MESSAGE} readings; broker {MQTT}; cores {os.cpu_count()}")
        results["bare_subscriber"] = (n, bare_subscriber(n))
        _report("bare_subscriber", *results["bare_subscriber"])
        with tempfile.TemporaryDirectory() as tmp:
            for w in args.workers:
                key = f"pipeline_{w}w"
                results[key] = (n, pipeline(schema, n, w, Path(tmp)))
                _report(key, *results[key])
        conn.execute("TRUNCATE readings")
        tx = psycopg.connect(DB, options=f"-c search_path={schema},public")
        results["copy"] = (n, copy_baseline(tx, n))
        tx.close()
        _report("copy", *results["copy"])
        results["naive"] = (args.naive_messages, naive_subscriber(schema, args.naive_messages))
        _report("naive", *results["naive"])
    finally:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    rate = {k: m / s for k, (m, s) in results.items()}
    print()
    for w in args.workers:
        key = f"pipeline_{w}w"
        print(
            f"{key}: {rate[key] * READINGS_PER_MESSAGE:,.0f} readings/s; "
            f"pipeline / bare_subscriber = {rate[key] / rate['bare_subscriber']:.2f}; "
            f"pipeline / copy = {rate[key] / rate['copy']:.2f}; "
            f"pipeline / naive = {rate[key] / rate['naive']:.1f}"
        )


def _report(name: str, messages: int, seconds: float) -> None:
    print(
        f"{name:>16}: {messages / seconds:>9,.0f} messages/s  "
        f"{messages * READINGS_PER_MESSAGE / seconds:>10,.0f} readings/s  "
        f"({messages} messages in {seconds:.2f} s)",
        flush=True,
    )


if __name__ == "__main__":
    main()
